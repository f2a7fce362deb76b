"""Train the small recogniser the nemo-serve tests use (tests/data/serve_model/).

The tiny QuartzNet of ``tests/data/configs/tiny_quartznet.yaml`` learns the 30
real AN4 training utterances (the recipe of ``tests/test_asr_overfit.py``), so
it spells real words on real audio: streaming tests then compare real text,
not a random model's constant output. Re-run to regenerate (CPU, ~1 min):

    python tests/scripts/make_serve_model.py
"""
import functools
import os
import shutil
import sys

import nemo_core
import nemo_asr
from nemo_asr.ctc_graph import ctc_graph
from nemo_asr.helpers import process_evaluation_batch, process_evaluation_epoch
from nemo_asr.model_config import load_model_config, modules_from_config

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
CONFIG = os.path.join(DATA, "configs", "tiny_quartznet.yaml")
AN4 = os.path.join(DATA, "an4_subset", "train_manifest.json")
OUT = os.path.join(DATA, "serve_model")


def main():
    cfg = load_model_config(CONFIG)
    labels = cfg["labels"]
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    train = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=labels, batch_size=10)
    check = nemo_asr.AudioToTextDataLayer(manifest_filepath=AN4, labels=labels, batch_size=10, shuffle=False)
    pre, encoder, decoder = modules_from_config(cfg)
    ctc = nemo_asr.CTCLossNM(num_classes=len(labels))
    loss = ctc_graph(train, pre, encoder, decoder, loss=ctc).loss
    evaluator = nemo_core.EvaluatorCallback(ctc_graph(check, pre, encoder, decoder, loss=ctc).monitored,
                                            functools.partial(process_evaluation_batch, labels=labels),
                                            functools.partial(process_evaluation_epoch, tag="train"), eval_step=400)
    folder = os.path.join(OUT, "tmp")
    shutil.rmtree(folder, ignore_errors=True)
    nf.train([loss], callbacks=[evaluator, nemo_core.CheckpointCallback(folder=folder, step_freq=400)],
             optimizer="novograd", lr_policy=nemo_core.optim.CosineAnnealing(warmup_steps=40),
             optimization_params={"max_steps": 400, "lr": 0.02, "weight_decay": 1e-3, "betas": (0.8, 0.5)})
    wer = evaluator.history[-1][1]["Evaluation_WER_train"]
    for name in os.listdir(folder):
        if name.startswith(("JasperEncoder", "JasperDecoderForCTC")):
            shutil.move(os.path.join(folder, name), os.path.join(OUT, name))
    shutil.rmtree(folder)
    print(f"train WER {wer:.3f}; checkpoints in {OUT}")
    return 0 if wer <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
