"""NeMo 0.x / NGC compatibility: checkpoint layout and numerical parity."""
import json
import os

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from nemo_asr.helpers import post_process_predictions

from conftest import REPO

DATA = os.path.join(REPO, "tests", "data", "ngc_compat")
CONFIGS = os.path.join(REPO, "examples", "asr", "configs")


def load(name):
    return np.load(os.path.join(DATA, name))


def yaml(path):
    with open(path) as handle:
        return YAML(typ="safe").load(handle)


@pytest.mark.parametrize("model", ["quartznet15x5", "quartznet10x5", "quartznet5x5", "jasper10x5", "jasper10x5dr"])
def test_state_dict_layout_matches_ngc(model):
    with open(os.path.join(DATA, "state_dict_layout.json")) as handle:
        layout = json.load(handle)[model]
    cfg = yaml(os.path.join(CONFIGS, f"{model}.yaml"))
    assert cfg["labels"] == layout["labels"]
    with torch.device("meta"):  # shapes only: the Jaspers have 300 M weights
        encoder = nemo_asr.JasperEncoder(feat_in=layout["feat_in"], **cfg["JasperEncoder"])
        decoder = nemo_asr.JasperDecoderForCTC(feat_in=1024, num_classes=len(cfg["labels"]))
    for module, key in ((encoder, "JasperEncoder"), (decoder, "JasperDecoderForCTC")):
        got = [(k, list(v.shape)) for k, v in module.state_dict().items()]
        assert got == list(layout[key].items())
    assert sum(p.numel() for p in encoder.parameters()) == layout["encoder_params"]
    assert sum(p.numel() for p in decoder.parameters()) == layout["decoder_params"]


@pytest.mark.parametrize("stft_conv", [False, True])
def test_mel_features_match_reference(stft_conv):
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0, stft_conv=stft_conv)
    pre.eval()
    features, lengths = pre(input_signal=torch.from_numpy(load("audio_signal.npy")),
                            length=torch.from_numpy(load("audio_lengths.npy")))
    reference, ref_lengths = load("features.npy"), load("feature_lengths.npy")
    assert features.shape == reference.shape and lengths.tolist() == ref_lengths.tolist()
    for i, n in enumerate(ref_lengths):
        assert np.abs(features[i, :, :n].numpy() - reference[i, :, :n]).max() < 1e-3
    assert torch.all(features[0, :, ref_lengths[0]:] == 0)


@pytest.mark.parametrize("name", ["small_qn", "small_jasper_dr"])
def test_restored_checkpoints_reproduce_reference_outputs(name):
    cfg = yaml(os.path.join(DATA, f"{name}.yaml"))
    labels = cfg["labels"]
    encoder = nemo_asr.JasperEncoder(feat_in=64, **cfg["JasperEncoder"])
    decoder = nemo_asr.JasperDecoderForCTC(feat_in=128, num_classes=len(labels))
    encoder.restore_from(os.path.join(DATA, f"{name}-JasperEncoder-STEP-247400.pt"))
    decoder.restore_from(os.path.join(DATA, f"{name}-JasperDecoderForCTC-STEP-247400.pt"))
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        encoded, enc_len = encoder(audio_signal=torch.from_numpy(load("features.npy")),
                                   length=torch.from_numpy(load("feature_lengths.npy")))
        log_probs = decoder(encoder_output=encoded)
    ref_len = load(f"{name}_encoded_lengths.npy")
    assert enc_len.tolist() == ref_len.astype(int).tolist()
    assert np.abs(encoded.numpy() - load(f"{name}_encoded.npy")).max() < 1e-3
    reference = load(f"{name}_log_probs.npy")
    assert np.abs(log_probs.numpy() - reference).max() < 1e-3
    greedy = nemo_asr.GreedyCTCDecoder()
    ours = post_process_predictions([greedy(log_probs=log_probs, log_probs_length=enc_len)], labels)
    theirs = post_process_predictions([greedy(log_probs=torch.from_numpy(reference), log_probs_length=enc_len)], labels)
    assert ours == theirs


def test_wrong_checkpoint_names_keys():
    cfg = yaml(os.path.join(DATA, "small_qn.yaml"))
    other = yaml(os.path.join(DATA, "small_jasper_dr.yaml"))
    encoder = nemo_asr.JasperEncoder(feat_in=64, **other["JasperEncoder"])
    with pytest.raises(nemo_core.StateDictMismatchError, match="small_qn-JasperEncoder-STEP-247400.pt") as info:
        encoder.restore_from(os.path.join(DATA, "small_qn-JasperEncoder-STEP-247400.pt"))
    assert info.value.missing and info.value.mis_shaped
    assert cfg["labels"] == other["labels"]
