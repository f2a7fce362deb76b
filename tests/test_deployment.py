"""Export (ONNX, TorchScript, PyTorch), the inference runner, int8 quantisation."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

pytest.importorskip("onnxruntime")

import nemo_core  # noqa: E402
import nemo_asr  # noqa: E402
from nemo_asr.export import AcousticPipeline, export_pipeline  # noqa: E402
from nemo_asr.helpers import post_process_predictions  # noqa: E402
from nemo_asr.inference import Recognizer  # noqa: E402
from nemo_asr.inference_runner import InferenceRunner  # noqa: E402
from nemo_asr.metrics import word_error_rate  # noqa: E402
from nemo_asr.quantization import quantize_pipeline  # noqa: E402

from conftest import PYTHON, REPO, subprocess_env  # noqa: E402

NGC = os.path.join(REPO, "tests", "data", "ngc_compat")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
TINY = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
sys.path.insert(0, os.path.join(REPO, "scripts"))


def yaml(path):
    with open(path) as handle:
        return YAML(typ="safe").load(handle)


def ngc_recognizer():
    recognizer = Recognizer(yaml(os.path.join(NGC, "small_qn.yaml")))
    recognizer.encoder.restore_from(os.path.join(NGC, "small_qn-JasperEncoder-STEP-247400.pt"))
    recognizer.decoder.restore_from(os.path.join(NGC, "small_qn-JasperDecoderForCTC-STEP-247400.pt"))
    return recognizer


def real_audio():
    return torch.from_numpy(np.load(os.path.join(NGC, "audio_signal.npy"))), \
        torch.from_numpy(np.load(os.path.join(NGC, "audio_lengths.npy")))


def valid_max_diff(a, b, lengths):
    return max((a[i, :n] - b[i, :n]).abs().max().item() for i, n in enumerate(lengths.tolist()))


def test_onnx_pipeline_parity_on_real_audio_with_variable_lengths(tmp_path):
    recognizer = ngc_recognizer()
    path = export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, str(tmp_path / "m.onnx"))
    import onnx

    assert onnx.load(path).opset_import[0].version >= 17
    eager = InferenceRunner("pytorch", model=AcousticPipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder))
    ort = InferenceRunner("onnxruntime", path=path, session_config={"session.intra_op.allow_spinning": "0"})
    assert ort.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    audio, lengths = real_audio()
    for batch, cut in ((slice(0, 5), 20800), (slice(1, 4), 15000), (slice(0, 1), 11200)):
        a, n = audio[batch, :cut], lengths[batch].clamp(max=cut)
        lp_eager, len_eager = eager(a, n)
        lp_ort, len_ort = ort(a, n)
        assert torch.equal(len_eager, len_ort)
        assert valid_max_diff(lp_eager, lp_ort, len_eager) <= 1e-4
        greedy = [nemo_asr.GreedyCTCDecoder()(log_probs=lp, log_probs_length=len_eager) for lp in (lp_eager, lp_ort)]
        labels = recognizer.labels
        assert post_process_predictions([greedy[0]], labels) == post_process_predictions([greedy[1]], labels)
    # and against NeMo 0.x's reference log-probs (their features were padded to 144 frames)
    reference = torch.from_numpy(np.load(os.path.join(NGC, "small_qn_log_probs.npy")))
    lp, n = ort(audio, lengths)
    assert valid_max_diff(lp, reference, n) <= 1e-3


def test_module_export_formats(tmp_path):
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    encoder = ngc_recognizer().encoder
    encoder.eval()
    features = torch.randn(3, 64, 90)
    lengths = torch.tensor([90, 70, 41])
    with torch.no_grad():
        expected, expected_len = encoder(audio_signal=features, length=lengths)
    onnx_path = nf.deployment_export(encoder, str(tmp_path / "enc.onnx"), nemo_core.DeploymentFormat.ONNX)
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    out, out_len = session.run(None, {"audio_signal": features.numpy(), "length": lengths.numpy()})
    assert np.array_equal(out_len, expected_len.numpy())
    assert valid_max_diff(torch.from_numpy(out).transpose(1, 2), expected.transpose(1, 2), expected_len) < 1e-4
    ts_path = nf.deployment_export(encoder, str(tmp_path / "enc.ts"), nemo_core.DeploymentFormat.TORCHSCRIPT)
    out_ts, _ = torch.jit.load(ts_path)(features, lengths)
    assert valid_max_diff(out_ts.transpose(1, 2), expected.transpose(1, 2), expected_len) < 1e-5
    pt_path = nf.deployment_export(encoder, str(tmp_path / "enc.pt"), nemo_core.DeploymentFormat.PYTORCH)
    saved = torch.load(pt_path, weights_only=False)
    assert saved["init_config"]["feat_in"] == 64 and set(saved["state_dict"]) == set(encoder.state_dict())
    with pytest.raises(ValueError, match="unknown port.*audio"):
        nf.deployment_export(encoder, str(tmp_path / "x.onnx"), nemo_core.DeploymentFormat.ONNX,
                             input_example={"audio": features})


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """A tiny QuartzNet that has learned the 30 AN4 training utterances."""
    folder = tmp_path_factory.mktemp("tiny")
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    recognizer = Recognizer(yaml(TINY))
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=os.path.join(AN4, "train_manifest.json"),
                                          labels=recognizer.labels, batch_size=10)
    log_probs, encoded_len, _, transcript, transcript_len = recognizer.tensors(layer)
    loss = nemo_asr.CTCLossNM(num_classes=len(recognizer.labels))(
        log_probs=log_probs, targets=transcript, input_length=encoded_len, target_length=transcript_len)
    nf.train([loss], optimizer="novograd", lr_policy=nemo_core.optim.CosineAnnealing(warmup_steps=30),
             callbacks=[nemo_core.CheckpointCallback(folder=str(folder), step_freq=300)],
             optimization_params={"max_steps": 300, "lr": 0.02, "weight_decay": 1e-3, "betas": (0.8, 0.5)})
    return Recognizer(yaml(TINY)).load(str(folder)), folder


def transcripts(recognizer, runner, manifest):
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    result = recognizer.run(nf, manifest, 8, runner=runner)
    return result["hypotheses"], result["references"]


@pytest.mark.slow
def test_backends_agree_and_int8_stays_within_one_wer_point(trained_tiny, tmp_path):
    recognizer, _ = trained_tiny
    manifest = os.path.join(AN4, "train_manifest.json")
    runners = {name: recognizer.runner(backend, "fp32", workdir=str(tmp_path))
               for name, backend in (("pytorch", "pytorch"), ("torchscript", "torchscript"), ("ort", "onnxruntime"))}
    results = {name: transcripts(recognizer, runner, manifest) for name, runner in runners.items()}
    assert results["pytorch"][0] == results["torchscript"][0] == results["ort"][0]
    fp32_wer = word_error_rate(*results["ort"])[0]
    assert fp32_wer <= 0.1

    from quantize import calibration_batches

    int8 = quantize_pipeline(str(tmp_path / "model.onnx"), str(tmp_path / "int8.onnx"),
                             calibration_batches(manifest, 16, 16000))
    int8_wer = word_error_rate(*transcripts(recognizer, InferenceRunner("onnxruntime", path=int8), manifest))[0]
    assert int8_wer - fp32_wer <= 0.01  # at most one WER point lost to int8
    bf16_wer = word_error_rate(*transcripts(recognizer, recognizer.runner("pytorch", "bf16"), manifest))[0]
    assert bf16_wer - fp32_wer <= 0.05


@pytest.mark.slow
def test_scripts_export_quantize_and_infer_backends(trained_tiny, tmp_path):
    _, folder = trained_tiny

    def run(script, *args):
        result = subprocess.run([PYTHON, os.path.join(REPO, *script.split("/")), *map(str, args)],
                                env=subprocess_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    run("scripts/export_jasper_to_onnx.py", "--config", os.path.join(NGC, "small_qn.yaml"),
        "--encoder", os.path.join(NGC, "small_qn-JasperEncoder-STEP-247400.pt"),
        "--decoder", os.path.join(NGC, "small_qn-JasperDecoderForCTC-STEP-247400.pt"), "--output", tmp_path / "qn.onnx")
    run("scripts/export_jasper_to_onnx.py", "--config", os.path.join(NGC, "small_qn.yaml"), "--features_input",
        "--encoder", os.path.join(NGC, "small_qn-JasperEncoder-STEP-247400.pt"),
        "--decoder", os.path.join(NGC, "small_qn-JasperDecoderForCTC-STEP-247400.pt"), "--output", tmp_path / "ed.onnx")
    import onnx

    for name in ("qn.onnx", "ed.onnx"):
        onnx.checker.check_model(onnx.load(str(tmp_path / name)))
    run("scripts/quantize.py", "--model_config", TINY, "--load_dir", folder, "--calibration_manifest",
        os.path.join(AN4, "train_manifest.json"), "--num_samples", 8, "--output", tmp_path / "int8.onnx")
    out = run("examples/asr/jasper_infer.py", "--model_config", TINY, "--load_dir", folder, "--eval_datasets",
              os.path.join(AN4, "train_manifest.json"), "--backend", "onnxruntime", "--model_path", tmp_path / "int8.onnx")
    assert "| train_manifest | 30 |" in out.stdout
    plain = run("examples/asr/transcribe.py", "--model_config", TINY, "--load_dir", folder, "--backend", "torchscript",
                os.path.join(AN4, "wav", "an46-mmap-b.wav"))
    assert plain.stdout.strip().endswith("stop")
