"""A tiny QuartzNet learns the 30 real AN4 training utterances (CPU, ~15 s)."""
import functools
import os

import pytest

import nemo_core
import nemo_asr
from nemo_asr.ctc_graph import ctc_graph
from nemo_asr.helpers import process_evaluation_batch, process_evaluation_epoch

from conftest import REPO

AN4 = os.path.join(REPO, "tests", "data", "an4_subset", "train_manifest.json")
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


def tiny_quartznet(filters=128):
    blocks = [dict(filters=filters, repeat=1, kernel=[11], stride=[2], dilation=[1], dropout=0.0,
                   residual=False, separable=True)]
    blocks += [dict(filters=filters, repeat=2, kernel=[k], stride=[1], dilation=[1], dropout=0.0,
                    residual=True, separable=True) for k in (13, 15, 17)]
    blocks += [dict(filters=2 * filters, repeat=1, kernel=[1], stride=[1], dilation=[1], dropout=0.0, residual=False)]
    return nemo_asr.JasperEncoder(jasper=blocks, activation="relu", feat_in=64), 2 * filters


@pytest.mark.slow
def test_tiny_quartznet_overfits_an4_subset():
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    train = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=LABELS, batch_size=10)
    check = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=LABELS, batch_size=10, shuffle=False)
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0)
    encoder, width = tiny_quartznet()
    decoder = nemo_asr.JasperDecoderForCTC(feat_in=width, num_classes=len(LABELS))
    ctc = nemo_asr.CTCLossNM(num_classes=len(LABELS))
    loss = ctc_graph(train, pre, encoder, decoder, loss=ctc).loss
    evaluator = nemo_core.EvaluatorCallback(
        ctc_graph(check, pre, encoder, decoder, loss=ctc).monitored,
        functools.partial(process_evaluation_batch, labels=LABELS),
        functools.partial(process_evaluation_epoch, tag="train"), eval_step=150)
    nf.train([loss], callbacks=[evaluator], optimizer="novograd",
             lr_policy=nemo_core.optim.CosineAnnealing(warmup_steps=30),
             optimization_params={"max_steps": 300, "lr": 0.02, "weight_decay": 1e-3, "betas": (0.8, 0.5)})
    first, last = evaluator.history[0][1], evaluator.history[-1][1]
    assert evaluator.history[-1][0] == 300
    assert last["Evaluation_WER_train"] <= 0.05  # near zero on all 30 utterances
    assert last["Evaluation_Loss_train"] < first["Evaluation_Loss_train"]
