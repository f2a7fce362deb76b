import os

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from nemo_core import NeuralTypeComparisonResult as R

from conftest import REPO

DATA = os.path.join(REPO, "tests", "data")
AN4 = os.path.join(DATA, "an4_subset")
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


def small_encoder(feat_in=64, separable=True):
    with open(os.path.join(DATA, "ngc_compat", "small_qn.yaml" if separable else "small_jasper_dr.yaml")) as h:
        cfg = YAML(typ="safe").load(h)
    return nemo_asr.JasperEncoder(feat_in=feat_in, **cfg["JasperEncoder"])


def test_tutorial_dag_shapes_and_types():
    dl = nemo_asr.AudioToTextDataLayer(manifest_filepath=os.path.join(AN4, "train_manifest.json"),
                                       labels=LABELS, batch_size=4, shuffle=False)
    pre = nemo_asr.AudioPreprocessing()
    aug = nemo_asr.SpectrogramAugmentation(rect_masks=5)
    enc = small_encoder()
    dec = nemo_asr.JasperDecoderForCTC(feat_in=128, num_classes=len(LABELS))
    ctc = nemo_asr.CTCLossNM(num_classes=len(LABELS))
    greedy = nemo_asr.GreedyCTCDecoder()
    audio, audio_len, text, text_len = dl()
    spec, spec_len = pre(input_signal=audio, length=audio_len)
    augmented = aug(input_spec=spec)
    assert augmented.ntype == spec.ntype  # keeps D=64, so the encoder can check it
    encoded, enc_len = enc(audio_signal=augmented, length=spec_len)
    log_probs = dec(encoder_output=encoded)
    loss = ctc(log_probs=log_probs, targets=text, input_length=enc_len, target_length=text_len)
    predictions = greedy(log_probs=log_probs)
    assert predictions.producer_args["log_probs_length"] is enc_len  # found through the DAG

    batch = next(iter(dl.make_dataloader(training=False)))
    values = nemo_core.GraphPlan([spec, spec_len, encoded, enc_len, log_probs, loss, predictions]).evaluate(batch)
    spec_v, spec_len_v, enc_v, enc_len_v, lp_v, loss_v, pred_v = values
    assert spec_v.shape[:2] == (4, 64) and spec_v.shape[2] % 16 == 0
    assert torch.equal(spec_len_v, (batch[1] + 159) // 160)
    assert enc_v.shape == (4, 128, spec_v.shape[2] // 2) and torch.equal(enc_len_v, (spec_len_v + 1) // 2)
    assert lp_v.shape == (4, spec_v.shape[2] // 2, 29)
    assert torch.allclose(lp_v.exp().sum(-1), torch.ones(lp_v.shape[:2]), atol=1e-4)
    assert loss_v.dim() == 0 and loss_v > 0 and pred_v.shape == lp_v.shape[:2]
    assert torch.all(pred_v[0, enc_len_v[0]:] == 28)  # blank past the valid frames


def test_feature_count_mismatch_fails_at_wiring_even_through_augmentation():
    dl = nemo_asr.AudioToTextDataLayer(manifest_filepath=os.path.join(AN4, "test_manifest.json"),
                                       labels=LABELS, batch_size=2)
    audio, audio_len, _, _ = dl()
    spec, spec_len = nemo_asr.AudioPreprocessing(features=80)(input_signal=audio, length=audio_len)
    augmented = nemo_asr.SpectrogramAugmentation(freq_masks=2)(input_spec=spec)
    with pytest.raises(nemo_core.NeuralPortNmTensorMismatchError) as info:
        small_encoder(feat_in=64)(audio_signal=augmented, length=spec_len)
    assert info.value.result is R.DIM_INCOMPATIBLE and "D=64" in str(info.value) and "D=80" in str(info.value)
    with pytest.raises(nemo_core.NeuralPortNmTensorMismatchError, match="AudioSignal\\(freq=16000\\)"):
        nemo_asr.AudioPreprocessing(sample_rate=8000)(input_signal=audio, length=audio_len)


@pytest.mark.parametrize("separable", [True, False])
def test_padding_never_changes_valid_outputs(separable):
    torch.manual_seed(0)
    enc, dec = small_encoder(separable=separable), nemo_asr.JasperDecoderForCTC(feat_in=128, num_classes=28)
    for module in (enc, dec):
        for m in module.modules():  # non-trivial BatchNorm statistics
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        module.eval()
    features = torch.from_numpy(np.load(os.path.join(DATA, "ngc_compat", "features.npy")))
    lengths = torch.from_numpy(np.load(os.path.join(DATA, "ngc_compat", "feature_lengths.npy")))
    padded = features.clone()
    for i, n in enumerate(lengths):
        padded[i, :, n:] = torch.randn(64, features.shape[2] - n) * 10  # garbage in the padding
    with torch.no_grad():
        batch_lp = dec(encoder_output=enc(audio_signal=padded, length=lengths)[0])
        for i in range(len(lengths)):
            n = int(lengths[i])
            alone, alone_len = enc(audio_signal=features[i:i + 1, :, :n], length=lengths[i:i + 1])
            alone_lp = dec(encoder_output=alone)
            valid = int(alone_len)
            assert torch.allclose(alone_lp[0, :valid], batch_lp[i, :valid], atol=1e-4)


def test_preprocessor_alone_vs_batch():
    pre = nemo_asr.AudioPreprocessing()
    pre.eval()
    audio = torch.from_numpy(np.load(os.path.join(DATA, "ngc_compat", "audio_signal.npy")))
    lengths = torch.from_numpy(np.load(os.path.join(DATA, "ngc_compat", "audio_lengths.npy")))
    batch, frames = pre(input_signal=audio, length=lengths)
    single, single_frames = pre(input_signal=audio[:1, : lengths[0]], length=lengths[:1])
    n = int(frames[0])
    assert int(single_frames[0]) == n
    assert torch.allclose(single[0, :, :n], batch[0, :, :n], atol=1e-3)


def test_augmentation_only_in_training_and_vectorised():
    aug = nemo_asr.SpectrogramAugmentation(freq_masks=2, time_masks=2, freq_width=8, time_width=10,
                                           rect_masks=3, rect_time=5, rect_freq=10, rng=0)
    spec = torch.randn(6, 64, 100)
    aug.eval()
    assert torch.equal(aug(input_spec=spec), spec)
    aug.train()
    out = aug(input_spec=spec)
    masked = out == 0
    assert 0 < masked.float().mean() < 0.6 and torch.equal(out[~masked], spec[~masked])
    assert len({tuple(masked[i].flatten().nonzero().flatten()[:5].tolist()) for i in range(6)}) > 1
    again = nemo_asr.SpectrogramAugmentation(freq_masks=2, time_masks=2, freq_width=8, time_width=10,
                                             rect_masks=3, rect_time=5, rect_freq=10, rng=0)
    again.train()
    assert torch.equal(again(input_spec=spec), out)  # seeded


def test_other_preprocessors_and_losses():
    audio = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 12000])
    mfcc, frames = nemo_asr.AudioToMFCCPreprocessor(n_mfcc=40)(input_signal=audio, length=lengths)
    assert mfcc.shape[:2] == (2, 40) and frames.tolist() == [100, 75] and torch.all(mfcc[1, :, 75:] == 0)
    spec, _ = nemo_asr.AudioToSpectrogramPreprocessor(n_fft=512)(input_signal=audio, length=lengths)
    assert spec.shape[1] == 257
    log_probs = torch.randn(2, 50, 29).log_softmax(-1)
    targets = torch.randint(0, 28, (2, 10))
    args = dict(log_probs=log_probs, targets=targets, input_length=torch.tensor([50, 40]),
                target_length=torch.tensor([10, 5]))
    per_utt = nemo_asr.CTCLossNM(num_classes=28, reduction="none")(**args)
    assert per_utt.shape == (2,)
    assert torch.allclose(nemo_asr.CTCLossNM(num_classes=28)(**args), per_utt.mean())
    assert torch.allclose(nemo_asr.CTCLossNM(num_classes=28, reduction="mean")(**args),
                          (per_utt / torch.tensor([10.0, 5.0])).mean())
    with pytest.raises(ValueError, match="valid: mean_batch"):
        nemo_asr.CTCLossNM(num_classes=28, reduction="avg")


def test_encoder_config_errors_and_variants():
    block = dict(filters=32, repeat=2, kernel=[5], stride=[1], dilation=[1], dropout=0.1, residual=True)
    with pytest.raises(ValueError, match="block 0 lacks required key.*residual"):
        nemo_asr.JasperEncoder(jasper=[{k: v for k, v in block.items() if k != "residual"}], activation="relu", feat_in=16)
    with pytest.raises(ValueError, match="unknown key.*filtrs"):
        nemo_asr.JasperEncoder(jasper=[dict(block, filtrs=3)], activation="relu", feat_in=16)
    with pytest.raises(ValueError, match="Unknown activation 'gelu'"):
        nemo_asr.JasperEncoder(jasper=[block], activation="gelu", feat_in=16)
    x, n = torch.randn(2, 16, 40), torch.tensor([40, 30])
    for activation in ("relu", "hardtanh", "selu", "swish"):
        for norm in ("batch", "layer", "instance", "group"):
            enc = nemo_asr.JasperEncoder(jasper=[dict(block, groups=2, separable=True, heads=-1)],
                                         activation=activation, feat_in=16, normalization_mode=norm, norm_groups=4)
            out, out_len = enc(audio_signal=x, length=n)
            assert out.shape == (2, 32, 40) and out_len.tolist() == [40, 30]
    heads = nemo_asr.JasperEncoder(jasper=[dict(block, separable=True, heads=4)], activation="relu", feat_in=16)
    assert heads(audio_signal=x, length=n)[0].shape == (2, 32, 40)


def test_train_monitor_and_eval_helpers(caplog):
    from nemo_asr.helpers import monitor_asr_train_progress, process_evaluation_batch, process_evaluation_epoch

    blank = len(LABELS)
    s, t, o, p = (LABELS.index(c) for c in "stop")
    predictions = torch.tensor([[s, s, blank, t, o, o, blank, p, blank], [t, blank, blank, blank, blank, blank, blank, blank, blank]])
    transcripts = torch.tensor([[s, t, o, p], [t, o, 0, 0]])
    lengths = torch.tensor([4, 2])
    with caplog.at_level("INFO", logger="nemo_asr"):
        rate = monitor_asr_train_progress([torch.tensor(1.5), predictions, transcripts, lengths], labels=LABELS)
    assert rate == 0.5 and "Prediction: stop" in caplog.text and "Reference: stop" in caplog.text
    global_vars = {}
    tensors = {"loss~~~x": [torch.tensor(2.0)], "predictions~~~y": [predictions],
               "transcripts~~~z": [transcripts], "transcript_length~~~w": [lengths]}
    process_evaluation_batch(tensors, global_vars, labels=LABELS)
    results = process_evaluation_epoch(global_vars, tag="DEV")
    assert results == {"Evaluation_Loss_DEV": 2.0, "Evaluation_WER_DEV": 0.5}
