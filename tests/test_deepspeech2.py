"""DeepSpeech2Encoder: padding never reaches valid steps (eval and training), ONNX parity on variable
lengths, model configs that pick it, and a short jasper.py run that lowers the loss."""
import json
import os
import re
import sys

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from nemo_core.deployment import deployment_export
from nemo_asr.model_config import ModelConfigError, load_model_config, modules_from_config
from nemo_asr.parts.deepspeech2 import DeepSpeech2ConfigError, DeepSpeech2Net, reverse_index

from conftest import REPO

CONFIGS = os.path.join(REPO, "examples", "asr", "configs")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
TINY = dict(conv_channels=[4, 8], conv_kernel=[[11, 5], [5, 5]], conv_padding=[[5, 2], [2, 2]], rnn_hidden_size=24,
            rnn_layers=3)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny RNN models: see conftest.one_thread



def tiny_net(**overrides):
    torch.manual_seed(0)
    return DeepSpeech2Net(64, **dict(TINY, **overrides))


def batch(lengths, feat=64, extra=0):
    torch.manual_seed(1)
    x = torch.randn(len(lengths), feat, max(lengths) + extra)
    return x, torch.tensor(lengths)


VARIANTS = [dict(rnn_type="lstm", bidirectional=True), dict(rnn_type="gru", bidirectional=False, lookahead_context=3),
            dict(rnn_type="rnn", bidirectional=True)]


@pytest.mark.parametrize("variant", VARIANTS, ids=["bilstm", "gru_lookahead", "birnn"])
def test_valid_outputs_do_not_depend_on_padding(variant):
    net = tiny_net(**variant).eval()
    x, lengths = batch([57, 40, 9, 33], extra=6)
    with torch.no_grad():
        out, out_lengths = net(x, lengths)
        garbage = x.clone()
        garbage[torch.arange(x.shape[-1])[None, None, :].expand_as(x) >= lengths[:, None, None]] = 1e3
        assert torch.equal(net(garbage, lengths)[0], out)  # whatever the padding holds
        for i, length in enumerate(lengths.tolist()):
            alone, alone_length = net(x[i:i + 1, :, :length], lengths[i:i + 1])
            assert int(alone_length) == int(out_lengths[i])
            torch.testing.assert_close(alone[0], out[i, :, :int(alone_length)], atol=1e-5, rtol=1e-5)
            assert torch.all(out[i, :, int(alone_length):] == 0)
    assert torch.equal(out_lengths, net.encoded_lengths(lengths)) and net.total_stride == 2
    assert out.shape[1] == net.out_channels == 24


def test_training_batch_norm_ignores_padding_and_gradients_flow():
    x, lengths = batch([50, 31, 12])
    padded = torch.cat([x, torch.randn(3, 64, 20)], dim=-1)  # more padding (with values) in the same batch
    outs = []
    for inputs in (x, padded):
        net = tiny_net().train()
        inputs = inputs.clone().requires_grad_(True)
        out, out_lengths = net(inputs, lengths)
        out.pow(2).sum().backward()
        outs.append((out, out_lengths, inputs.grad, net))
    (a, n, grad, net), (b, _, grad_padded, net_padded) = outs
    torch.testing.assert_close(b[..., :a.shape[-1]], a, atol=1e-5, rtol=1e-5)
    assert torch.all(grad_padded[..., x.shape[-1]:] == 0)  # padding gets no gradient
    torch.testing.assert_close(grad_padded[..., :x.shape[-1]], grad, atol=1e-4, rtol=1e-4)
    for (name, p), (_, q) in zip(net.named_parameters(), net_padded.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-4)
    for m, m_padded in zip(net.modules(), net_padded.modules()):  # running statistics from valid steps only
        if isinstance(m, torch.nn.BatchNorm1d):
            torch.testing.assert_close(m_padded.running_var, m.running_var)


def test_reverse_index_reverses_within_length():
    assert reverse_index(torch.tensor([3, 5, 0]), 5).tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("variant", VARIANTS[:2], ids=["bilstm", "gru_lookahead"])
def test_onnx_export_matches_on_variable_lengths(tmp_path, variant):
    import onnxruntime as ort

    encoder = nemo_asr.DeepSpeech2Encoder(feat_in=64, **dict(TINY, **variant))
    encoder.eval()
    path = str(tmp_path / "ds2.onnx")
    deployment_export(encoder, path, nemo_core.DeploymentFormat.ONNX, input_example=batch([40, 22]))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for lengths in ([77, 50, 13, 61], [9], [30, 30]):  # other batch sizes and lengths than the example's
        x, n = batch(lengths)
        with torch.no_grad():
            ref, ref_lengths = encoder(audio_signal=x, length=n)
        out, out_lengths = session.run(None, {"audio_signal": x.numpy(), "length": n.numpy()})
        np.testing.assert_array_equal(out_lengths, ref_lengths.numpy())
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=1e-4)


def test_typed_ports_and_bad_arguments():
    encoder = nemo_asr.DeepSpeech2Encoder(feat_in=64, **TINY)
    assert encoder.input_ports["audio_signal"].axes[1].size == 64
    assert encoder.output_ports["outputs"].axes[1].size == encoder.out_channels == 24
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(features=80)
    labels = load_model_config(os.path.join(CONFIGS, "deepspeech2_demo.yaml"))["labels"]
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=os.path.join(AN4, "test_manifest.json"), labels=labels,
                                          batch_size=2)
    audio, audio_len, _, _ = layer()
    spec, spec_len = pre(input_signal=audio, length=audio_len)
    with pytest.raises(nemo_core.NeuralPortNmTensorMismatchError, match="DeepSpeech2Encoder"):
        encoder(audio_signal=spec, length=spec_len)
    for bad, message in ((dict(rnn_type="transformer"), "rnn_type"), (dict(conv_stride=[[2, 2]]), "conv_stride"),
                         (dict(conv_kernel=[[99, 5], [5, 5]], conv_padding=0), "no frequency bins")):
        with pytest.raises(DeepSpeech2ConfigError, match=message):
            DeepSpeech2Net(64, **dict(TINY, **bad))


def write_yaml(path, cfg):
    with open(path, "w") as handle:
        YAML(typ="safe").dump(cfg, handle)
    return str(path)


def test_configs_pick_the_encoder(tmp_path):
    demo = load_model_config(os.path.join(CONFIGS, "deepspeech2_demo.yaml"))
    qn = load_model_config(os.path.join(CONFIGS, "quartznet_demo.yaml"))
    assert {k: v for k, v in demo.items() if k not in ("DeepSpeech2Encoder", "model")} == \
        {k: v for k, v in qn.items() if k not in ("JasperEncoder", "model")}  # same features, labels, data
    pre, encoder, decoder = modules_from_config(demo)
    assert isinstance(encoder, nemo_asr.DeepSpeech2Encoder) and encoder.out_channels == 256
    assert encoder.input_ports["audio_signal"].axes[1].size == pre.num_features
    full = load_model_config(os.path.join(CONFIGS, "deepspeech2.yaml"))["DeepSpeech2Encoder"]
    assert full["rnn_layers"] == 5 and full["rnn_hidden_size"] == 1024 and full["conv_channels"] == [32, 32]

    both = dict(demo, JasperEncoder=qn["JasperEncoder"])
    with pytest.raises(ModelConfigError, match="both JasperEncoder and DeepSpeech2Encoder"):
        load_model_config(write_yaml(tmp_path / "both.yaml", both))
    neither = {k: v for k, v in demo.items() if k != "DeepSpeech2Encoder"}
    with pytest.raises(ModelConfigError, match="missing section.*JasperEncoder or DeepSpeech2Encoder"):
        load_model_config(write_yaml(tmp_path / "neither.yaml", neither))
    typo = dict(demo, DeepSpeech2Encoder=dict(demo["DeepSpeech2Encoder"], rnn_hiden_size=3))
    with pytest.raises(ModelConfigError, match="unknown key 'rnn_hiden_size' in section DeepSpeech2Encoder"):
        load_model_config(write_yaml(tmp_path / "typo.yaml", typo))


def an4_manifest(path, count):
    with open(os.path.join(AN4, "train_manifest.json")) as handle:
        rows = [json.loads(line) for line in handle][:count]
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(dict(row, audio_filepath=os.path.join(AN4, row["audio_filepath"]))) + "\n")
    return str(path)


def test_jasper_py_trains_deepspeech2_and_the_runners_run_it(tmp_path, capsys):
    sys.path.insert(0, os.path.join(REPO, "examples", "asr"))
    import jasper
    from nemo_asr.inference import Recognizer

    cfg = load_model_config(os.path.join(CONFIGS, "deepspeech2_demo.yaml"))
    cfg["DeepSpeech2Encoder"].update(TINY)
    cfg.pop("SpectrogramAugmentation")
    config = write_yaml(tmp_path / "tiny_ds2.yaml", cfg)
    train = an4_manifest(tmp_path / "train.json", 4)
    work = tmp_path / "work"
    jasper.main(["--model_config", config, "--train_dataset", train, "--batch_size", "4", "--lr", "0.01",
                 "--optimizer", "adam", "--max_steps", "25", "--lr_policy", "none", "--random_seed", "0",
                 "--work_dir", str(work), "--exp_name", "ds2", "--log_freq", "1", "--checkpoint_save_freq", "25"])
    log = open(work / "ds2" / "log_globalrank-0_localrank-0.txt").read()
    losses = [float(v) for v in re.findall(r"Step \d+: loss ([0-9.]+)", log)]
    assert len(losses) >= 20 and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    folder = work / "ds2" / "checkpoints"
    assert {"DeepSpeech2Encoder-STEP-25.pt", "JasperDecoderForCTC-STEP-25.pt"} <= set(os.listdir(folder))

    recognizer = Recognizer(load_model_config(config)).load(str(folder))
    assert isinstance(recognizer.encoder, nemo_asr.DeepSpeech2Encoder)
    runner = recognizer.runner("pytorch")
    audio, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 9000])
    log_probs, frames = runner(audio, lengths)
    assert log_probs.shape[0] == 2 and log_probs.shape[-1] == len(cfg["labels"]) + 1
    assert torch.equal(frames, recognizer.encoder.encoded_lengths(recognizer.preprocessor.frames_for_samples(lengths)))
    onnx_log_probs, onnx_frames = recognizer.runner("onnxruntime")(audio, lengths)  # the exported pipeline
    assert torch.equal(onnx_frames, frames)
    for i, n in enumerate(frames.tolist()):
        torch.testing.assert_close(onnx_log_probs[i, :n], log_probs[i, :n], atol=1e-4, rtol=1e-4)
