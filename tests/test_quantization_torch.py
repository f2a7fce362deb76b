"""PyTorch-native int8 (torch.ao): which layers each method quantises, closeness to float32 on real
AN4 speech, and scripts/quantize.py --method torch_dynamic|torch_static writing TorchScript pipelines."""
import json
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

import nemo_asr
from nemo_asr.export import AcousticPipeline
from nemo_asr.helpers import post_process_predictions
from nemo_asr.inference import Recognizer
from nemo_asr.inference_runner import InferenceRunner
from nemo_asr.model_config import load_model_config, modules_from_config
from nemo_asr.quantization import Int8Island, feature_batches, quantize_torch, quantized_layers

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))

import quantize  # noqa: E402

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
TINY_QN = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
SERVE_MODEL = os.path.join(REPO, "tests", "data", "serve_model")  # tiny QuartzNet trained on the AN4 subset
# int8 greedy transcripts against float32's on the AN4 test utterances: at most this character error rate
CER_BOUND = 0.05


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny RNN models: see conftest.one_thread


def an4_audio(count=6, split="test_manifest.json"):
    return quantize.calibration_batches(os.path.join(AN4, split), count, 16000, batch_size=3)


def transcripts(pipeline, batches, labels):
    greedy = nemo_asr.GreedyCTCDecoder()
    found = []
    with torch.no_grad():
        for audio, lengths in batches:
            log_probs, frames = pipeline(torch.from_numpy(audio), torch.from_numpy(lengths))
            found += post_process_predictions([greedy.forward(log_probs, frames)], labels)
    return found


def tiny_ds2_config(tmp_path, bidirectional=True):
    cfg = load_model_config(TINY_QN)
    del cfg["JasperEncoder"]
    cfg["DeepSpeech2Encoder"] = dict(conv_channels=[4, 8], conv_kernel=[[11, 5], [5, 5]],
                                     conv_padding=[[5, 2], [2, 2]], rnn_type="lstm", rnn_hidden_size=32,
                                     rnn_layers=2, bidirectional=bidirectional, lookahead_context=4)
    return cfg


@pytest.fixture(scope="module")
def quartznet():
    return Recognizer(load_model_config(TINY_QN)).load(SERVE_MODEL)


def test_static_quartznet_quantises_dense_convs_keeps_depthwise_and_head_float(quartznet):
    calibration = feature_batches(quartznet.preprocessor, an4_audio(6, "train_manifest.json"))
    enc, dec = quantize_torch(quartznet.encoder, quartznet.decoder, "torch_static", calibration)
    convs = [m for m in quartznet.encoder.modules() if isinstance(m, nn.Conv1d)]
    depthwise = [m for m in convs if m.groups > 1]
    assert depthwise and quantized_layers(enc) == {"Conv1d": len(convs) - len(depthwise)}
    assert sum(isinstance(m, Int8Island) for m in enc.modules()) == len(convs) - len(depthwise)
    assert quantized_layers(dec) == {} and type(dec.decoder_layers[0]) is nn.Conv1d  # head float by default
    assert all(type(m.conv) is nn.Conv1d for m in quartznet.encoder.modules() if hasattr(m, "conv"))  # original kept
    # the length arithmetic reads the wrapped convolutions' attributes
    assert enc.total_stride == quartznet.encoder.total_stride
    lengths = torch.tensor([100, 37])
    assert torch.equal(enc.encoded_lengths(lengths), quartznet.encoder.encoded_lengths(lengths))

    _, head_int8 = quantize_torch(quartznet.encoder, quartznet.decoder, "torch_static", calibration,
                                  quantize_head=True)
    assert quantized_layers(head_int8) == {"Conv1d": 1}


@pytest.mark.parametrize("method", ["torch_static", "torch_dynamic"])
def test_int8_quartznet_transcribes_real_speech_like_float(quartznet, method):
    calibration = feature_batches(quartznet.preprocessor, an4_audio(6))
    enc, dec = quantize_torch(quartznet.encoder, quartznet.decoder, method, calibration)
    test = an4_audio(12, "train_manifest.json")  # the utterances the model learnt: it is sure of them
    fp32 = transcripts(AcousticPipeline(quartznet.preprocessor, quartznet.encoder, quartznet.decoder), test,
                       quartznet.labels)
    int8 = transcripts(AcousticPipeline(quartznet.preprocessor, enc, dec), test, quartznet.labels)
    assert sum(len(t) for t in fp32) > 20  # a trained model: real text to compare
    cer = nemo_asr.char_error_rate(int8, fp32)[0]
    print(f"{method}: CER int8 vs float32 greedy transcripts {cer:.3f}")
    assert cer <= CER_BOUND, (int8, fp32)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_deepspeech2_dynamic_and_static(tmp_path, bidirectional):
    torch.manual_seed(0)
    pre, enc, dec = modules_from_config(tiny_ds2_config(tmp_path, bidirectional))
    enc.eval(), dec.eval()
    features = feature_batches(pre, an4_audio(6))
    dynamic, _ = quantize_torch(enc, dec, "torch_dynamic")
    assert quantized_layers(dynamic) == {"dynamic.LSTM": 2 * (2 if bidirectional else 1)}
    static, static_dec = quantize_torch(enc, dec, "torch_static", features[:1])
    expected = {"Conv2d": 2, "dynamic.LSTM": 2 * (2 if bidirectional else 1)}
    assert quantized_layers(static) == expected and quantized_layers(static_dec) == {}
    if not bidirectional:  # the lookahead is depthwise: float (fbgemm's int8 depthwise 1-D conv is slower)
        assert type(static.net.lookahead.conv) is nn.Conv1d
    with torch.no_grad():
        for model in (dynamic, static):
            for feats, frames in features:
                ref, ref_frames = enc(audio_signal=feats, length=frames)
                out, out_frames = model(audio_signal=feats, length=frames)
                assert torch.equal(out_frames, ref_frames)
                padding = torch.arange(out.shape[-1])[None, :] >= out_frames[:, None]
                assert torch.all(out.transpose(1, 2)[padding] == 0)  # padding stays zero
                relative = (out - ref).norm() / ref.norm()
                assert relative < 0.1, relative


def test_method_errors(quartznet):
    with pytest.raises(ValueError, match="calibration batches"):
        quantize_torch(quartznet.encoder, quartznet.decoder, "torch_static")
    with pytest.raises(ValueError, match="quantize_head needs torch_static"):
        quantize_torch(quartznet.encoder, quartznet.decoder, "torch_dynamic", quantize_head=True)
    with pytest.raises(ValueError, match="method must be one of"):
        quantize_torch(quartznet.encoder, quartznet.decoder, "int4")


def save_checkpoints(folder, *modules):
    os.makedirs(folder)
    for module in modules:
        module.save_to(os.path.join(folder, f"{type(module).__name__}-STEP-1.pt"))
    return str(folder)


@pytest.mark.parametrize("model", ["quartznet", "deepspeech2"])
def test_quantize_script_writes_torchscript_pipelines(tmp_path, capsys, model):
    if model == "quartznet":
        config, folder, method = TINY_QN, SERVE_MODEL, "torch_static"
    else:
        torch.manual_seed(0)
        cfg = tiny_ds2_config(tmp_path)
        config = str(tmp_path / "ds2.yaml")
        from ruamel.yaml import YAML

        with open(config, "w") as handle:
            YAML(typ="safe").dump(cfg, handle)
        folder = save_checkpoints(tmp_path / "ckpt", *modules_from_config(cfg)[1:])
        method = "torch_dynamic"
    output = tmp_path / "int8.ts"
    quantize.main(["--method", method, "--model_config", config, "--load_dir", folder, "--calibration_manifest",
                   os.path.join(AN4, "train_manifest.json"), "--num_samples", "4", "--output", str(output),
                   "--fp32_output", str(tmp_path / "fp32.ts")])
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == method and summary["int8_layers"]["encoder"]
    int8, fp32 = (InferenceRunner("torchscript", path=str(tmp_path / name)) for name in ("int8.ts", "fp32.ts"))
    assert int8.metadata == fp32.metadata and "nemo_asr.weights_sha256" in int8.metadata
    audio, lengths = an4_audio(3)[0]  # batch and lengths other than the traced example's
    (lp8, n8), (lp32, n32) = (r(torch.from_numpy(audio), torch.from_numpy(lengths)) for r in (int8, fp32))
    assert torch.equal(n8, n32)
    agree = (lp8.argmax(-1) == lp32.argmax(-1)).float().mean()
    assert agree > 0.9, agree


def write_tiny_ds2(tmp_path, rnn_type="lstm"):
    """(config path, checkpoint folder) of a tiny random DeepSpeech2."""
    from ruamel.yaml import YAML

    torch.manual_seed(0)
    cfg = tiny_ds2_config(tmp_path)
    cfg["DeepSpeech2Encoder"]["rnn_type"] = rnn_type
    config = str(tmp_path / f"ds2_{rnn_type}.yaml")
    with open(config, "w") as handle:
        YAML(typ="safe").dump(cfg, handle)
    return config, save_checkpoints(tmp_path / f"ckpt_{rnn_type}", *modules_from_config(cfg)[1:])


def test_ort_dynamic_makes_deepspeech2_lstms_int8_and_refuses_models_without_lstms(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnx

    config, folder = write_tiny_ds2(tmp_path)
    output = tmp_path / "ds2_int8.onnx"
    quantize.main(["--method", "ort_dynamic", "--model_config", config, "--load_dir", folder,
                   "--output", str(output), "--fp32_output", str(tmp_path / "ds2.onnx")])  # no calibration needed
    assert json.loads(capsys.readouterr().out)["method"] == "ort_dynamic"
    ops = [node.op_type for node in onnx.load(str(output)).graph.node]
    assert ops.count("DynamicQuantizeLSTM") == 4 and "LSTM" not in ops  # 2 layers x 2 directions
    int8, fp32 = (InferenceRunner("onnxruntime", path=str(tmp_path / name)) for name in ("ds2_int8.onnx", "ds2.onnx"))
    ours = [{k: v for k, v in r.metadata.items() if k.startswith("nemo_asr.")} for r in (int8, fp32)]
    assert ours[0] == ours[1] and "nemo_asr.weights_sha256" in ours[0]  # the float model's identity
    audio, lengths = an4_audio(3)[0]
    (lp8, n8), (lp32, n32) = (r(torch.from_numpy(audio), torch.from_numpy(lengths)) for r in (int8, fp32))
    assert torch.equal(torch.as_tensor(n8), torch.as_tensor(n32))
    relative = (torch.as_tensor(lp8) - torch.as_tensor(lp32)).norm() / torch.as_tensor(lp32).norm()
    assert 0 < relative < 0.05, relative  # int8 really ran, and stayed close
    # QuartzNet (convolutions only) and a GRU DeepSpeech2: one line saying what to use instead
    gru_config, gru_folder = write_tiny_ds2(tmp_path, "gru")
    for cfg, ckpt, why in ((TINY_QN, SERVE_MODEL, "its layers are convolutions"),
                           (gru_config, gru_folder, "its GRU layers have no ONNX Runtime int8 kernel")):
        with pytest.raises(SystemExit) as stop:
            quantize.main(["--method", "ort_dynamic", "--model_config", cfg, "--load_dir", ckpt,
                           "--output", str(tmp_path / "refused.onnx")])
        err = capsys.readouterr().err
        assert stop.value.code == 1 and why in err and "use --method ort_static" in err and "Traceback" not in err
        assert not (tmp_path / "refused.onnx").exists()


def test_quantize_script_argument_errors(tmp_path, capsys):
    base = ["--model_config", TINY_QN, "--load_dir", SERVE_MODEL, "--output", str(tmp_path / "m.ts")]
    for extra, message in ((["--method", "torch_static"], "calibrates activation ranges"),
                           (["--method", "torch_dynamic", "--quantize_head"], "--quantize_head applies to"),
                           (["--method", "ort_dynamic", "--keep_decoder_fp32"], "--keep_decoder_fp32 applies to")):
        with pytest.raises(SystemExit):
            quantize.main(base + extra)
        assert message in capsys.readouterr().err
    assert not np.any([name.endswith(".ts") for name in os.listdir(tmp_path)])
