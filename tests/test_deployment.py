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
from nemo_asr.ctc_graph import ctc_graph  # noqa: E402
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


@pytest.fixture(autouse=True)
def _export_cache(tmp_path, monkeypatch):
    """Exports made by ``Recognizer.runner`` go to this test's folder, never to ~/.cache."""
    monkeypatch.setenv("NEMO_CACHE_DIR", str(tmp_path / "export_cache"))


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


def test_pipeline_computes_the_preprocessors_own_features():
    """The pipeline shares the preprocessor's front end (no copy) and calls the same feature function with
    the export options: the convolution STFT instead of torch.stft, no padding to a multiple of 16 frames."""
    recognizer = ngc_recognizer()
    pipeline = AcousticPipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder)
    assert pipeline.features.featurizer is recognizer.preprocessor.featurizer
    audio, lengths = real_audio()
    recognizer.preprocessor.eval()
    with torch.no_grad():
        padded, frames = recognizer.preprocessor(input_signal=audio, length=lengths)
        features, pipeline_frames = pipeline.features(audio, lengths)
    assert torch.equal(frames, pipeline_frames)
    assert padded.shape[-1] % 16 == 0 and int(frames.max()) <= features.shape[-1] < padded.shape[-1]
    assert valid_max_diff(features.transpose(1, 2), padded.transpose(1, 2), frames) < 1e-3


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
    graph = ctc_graph(layer, recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                      loss=nemo_asr.CTCLossNM(num_classes=len(recognizer.labels)))
    nf.train([graph.loss], optimizer="novograd", lr_policy=nemo_core.optim.CosineAnnealing(warmup_steps=30),
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

    int8 = quantize_pipeline(runners["ort"].path, str(tmp_path / "int8.onnx"),
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


# ---------------------------------------------------------------- deployment_export: example forms
def ort_session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def test_deployment_export_takes_a_tensor_a_tuple_or_a_dict_of_inputs(tmp_path):
    """NeMo 0.x scripts pass one tensor (``torch.zeros(1, 64, 256)``) or a tuple in port order."""
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    recognizer = ngc_recognizer()
    encoder, decoder = recognizer.encoder, recognizer.decoder
    encoder.eval()
    features, lengths = torch.randn(2, 64, 120), torch.tensor([120, 77])
    with torch.no_grad():
        expected, expected_len = encoder(audio_signal=features, length=lengths)
    # one tensor: the length port is filled with full lengths and stays an input of the graph
    path = nf.deployment_export(encoder, str(tmp_path / "enc.onnx"), nemo_core.DeploymentFormat.ONNX,
                                torch.zeros(1, 64, 256))
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()] == ["audio_signal", "length"]
    out, out_len = session.run(None, {"audio_signal": features.numpy(), "length": lengths.numpy()})
    assert np.array_equal(out_len, expected_len.numpy())
    assert valid_max_diff(torch.from_numpy(out).transpose(1, 2), expected.transpose(1, 2), expected_len) < 1e-4
    # a tuple (and a list) in port order
    ts = nf.deployment_export(encoder, str(tmp_path / "enc.ts"), nemo_core.DeploymentFormat.TORCHSCRIPT,
                              (torch.zeros(2, 64, 256), torch.tensor([256, 100])))
    out_ts, out_ts_len = torch.jit.load(ts)(features, lengths)
    assert torch.equal(out_ts_len, expected_len)
    assert valid_max_diff(out_ts.transpose(1, 2), expected.transpose(1, 2), expected_len) < 1e-5
    nf.deployment_export(encoder, str(tmp_path / "enc_list.pt"), nemo_core.DeploymentFormat.PYTORCH,
                         [torch.zeros(1, 64, 32), torch.tensor([32])])
    # a dict keyed by port name; the decoder has one port
    dec = nf.deployment_export(decoder, str(tmp_path / "dec.onnx"), nemo_core.DeploymentFormat.ONNX,
                               {"encoder_output": torch.zeros(1, 128, 64)})
    (log_probs,) = ort_session(dec).run(None, {"encoder_output": expected.numpy()})
    with torch.no_grad():
        assert np.abs(log_probs - decoder(encoder_output=expected).numpy()).max() < 1e-4


@pytest.mark.parametrize("example, message", [
    ((torch.zeros(1, 64, 9), torch.tensor([9]), torch.tensor([9])),
     r"input_example has 3 tensor\(s\) but JasperEncoder has input ports audio_signal \(B, D=64, T\), length \(B\)"),
    ({"audio": torch.zeros(1, 64, 9)}, r"unknown port\(s\) audio; JasperEncoder has input ports audio_signal"),
    ({"length": torch.tensor([9])}, r"no tensor for port\(s\) audio_signal of JasperEncoder"),
    (torch.zeros(1, 80, 9), r"input_example\['audio_signal'\] has shape \(1, 80, 9\) .*needs D=64 on axis 1"),
    (torch.zeros(64, 9), r"has shape \(64, 9\) but port 'audio_signal' of JasperEncoder has 3 axes"),
    ("features.npy", r"input_example for JasperEncoder is a str; pass one tensor, a tuple/list"),
    ((np.zeros((1, 64, 9), np.float32),), r"input_example\['audio_signal'\] for JasperEncoder is a ndarray"),
])
def test_deployment_export_refuses_examples_that_do_not_fit_the_ports(tmp_path, example, message):
    encoder = ngc_recognizer().encoder
    with pytest.raises(ValueError, match=message):
        nemo_core.deployment.deployment_export(encoder, str(tmp_path / "x.onnx"), nemo_core.DeploymentFormat.ONNX,
                                               example)
    assert os.listdir(tmp_path) == []


def test_output_example_is_checked_against_the_module_outputs(tmp_path):
    from nemo_core.deployment import deployment_export

    recognizer = ngc_recognizer()
    encoder, decoder = recognizer.encoder, recognizer.decoder
    onnx_format = nemo_core.DeploymentFormat.ONNX
    # T differs from the run's (64 frames): dynamic in the export, so not compared
    path = deployment_export(decoder, str(tmp_path / "dec.onnx"), onnx_format, torch.zeros(1, 128, 64),
                             torch.zeros(1, 50, 29))
    assert [o.name for o in ort_session(path).get_outputs()] == ["output"]
    deployment_export(decoder, str(tmp_path / "dec.ts"), nemo_core.DeploymentFormat.TORCHSCRIPT,
                      torch.zeros(1, 128, 64), output_example={"output": torch.zeros(1, 64, 29)})
    bad = [
        ((torch.zeros(1, 128, 128), torch.zeros(1)), r"output port 'encoded_lengths' of JasperEncoder gives "
                                                     r"torch.int64 \(1,\) .* output_example has torch.float32"),
        (torch.zeros(1, 128, 128), r"output_example has 1 tensor\(s\) but JasperEncoder returns 2"),
        ((torch.zeros(1, 96, 128), torch.tensor([1])), r"output_example\['outputs'\] .* needs D=128"),
        ({"log_probs": torch.zeros(1)}, r"unknown port\(s\) log_probs; JasperEncoder has output ports outputs"),
    ]
    for output_example, message in bad:
        with pytest.raises(ValueError, match=message):
            deployment_export(encoder, str(tmp_path / "bad.onnx"), onnx_format, torch.zeros(1, 64, 256),
                              output_example)
    assert sorted(os.listdir(tmp_path)) == ["dec.onnx", "dec.ts"]


def test_exported_files_carry_metadata(tmp_path):
    from nemo_core.deployment import deployment_export, read_metadata

    decoder = ngc_recognizer().decoder
    for fmt, name in ((nemo_core.DeploymentFormat.ONNX, "d.onnx"), (nemo_core.DeploymentFormat.TORCHSCRIPT, "d.ts"),
                      (nemo_core.DeploymentFormat.PYTORCH, "d.pt")):
        path = deployment_export(decoder, str(tmp_path / name), fmt, torch.zeros(1, 128, 16), metadata={"k": "v"})
        assert read_metadata(path) == {"k": "v"}
    assert sorted(os.listdir(tmp_path)) == ["d.onnx", "d.pt", "d.ts"]  # no temporary files left


# ---------------------------------------------------------------- Recognizer.runner: cache and identity
def ngc_folder(tmp_path, name="ckpt", perturb=0.0):
    """A checkpoint folder with small_qn's weights (the decoder's shifted by ``perturb``)."""
    import shutil

    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(os.path.join(NGC, "small_qn-JasperEncoder-STEP-247400.pt"), folder / "JasperEncoder-STEP-10.pt")
    state = torch.load(os.path.join(NGC, "small_qn-JasperDecoderForCTC-STEP-247400.pt"))
    torch.save({k: v + perturb for k, v in state.items()}, folder / "JasperDecoderForCTC-STEP-10.pt")
    return str(folder)


def small_qn_cfg(**preprocessor):
    cfg = yaml(os.path.join(NGC, "small_qn.yaml"))
    if preprocessor:
        cfg["AudioToMelSpectrogramPreprocessor"] = preprocessor
    return cfg


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_runner_reuses_the_cached_export(tmp_path, monkeypatch, backend):
    import nemo_asr.export

    cache = tmp_path / "cache"
    monkeypatch.setenv("NEMO_CACHE_DIR", str(cache))
    folder = ngc_folder(tmp_path)
    first = Recognizer(small_qn_cfg()).load(folder).runner(backend, "fp32", None, str(tmp_path / "work"))
    assert os.path.dirname(first.path) == str(cache) and os.listdir(cache) == [os.path.basename(first.path)]
    mtime = os.stat(first.path).st_mtime_ns
    assert first.metadata["nemo_asr.checkpoint"].startswith(f"step 10 in {folder}")

    def no_export(*args, **kwargs):
        raise AssertionError("the second call exported again")

    monkeypatch.setattr(nemo_asr.export, "export_pipeline", no_export)
    second = Recognizer(small_qn_cfg()).load(folder).runner(backend, "fp32", None, str(tmp_path / "work"))
    assert second.path == first.path and os.stat(second.path).st_mtime_ns == mtime
    audio, lengths = real_audio()
    assert torch.equal(first(audio, lengths)[0], second(audio, lengths)[0])
    # other weights or another config: another file (so exporting again)
    with pytest.raises(AssertionError, match="exported again"):
        Recognizer(small_qn_cfg()).load(ngc_folder(tmp_path, "other", 0.01)).runner(backend, cache_dir=str(cache))
    with pytest.raises(AssertionError, match="exported again"):
        Recognizer(small_qn_cfg(window="hamming")).load(folder).runner(backend, cache_dir=str(cache))


def test_runner_exports_to_workdir_when_the_cache_cannot_be_written(tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    recognizer = Recognizer(small_qn_cfg()).load(ngc_folder(tmp_path))
    runner = recognizer.runner("torchscript", workdir=str(tmp_path / "work"), cache_dir=str(blocker / "cache"))
    assert os.path.dirname(runner.path) == str(tmp_path / "work")
    assert "Cannot use the export cache" in caplog.text


def test_model_path_from_other_weights_or_config_is_refused(tmp_path):
    from nemo_asr.export import ModelFileMismatchError

    folder = ngc_folder(tmp_path)
    exported = Recognizer(small_qn_cfg()).load(folder).runner("onnxruntime").path
    other = ngc_folder(tmp_path, "other", 0.01)
    with pytest.raises(ModelFileMismatchError) as info:
        Recognizer(small_qn_cfg()).load(other).runner("onnxruntime", model_path=exported)
    message = str(info.value)
    assert f"Model file {exported} does not hold the model" in message
    assert f"from step 10 in {folder}" in message and f"from step 10 in {other}" in message
    with pytest.raises(ModelFileMismatchError, match=r"another model config \(preprocessor differ\)"):
        Recognizer(small_qn_cfg(window="hamming")).load(folder).runner("onnxruntime", model_path=exported)
    # the same checkpoint and config: accepted, whichever way the weights were loaded
    assert Recognizer(small_qn_cfg()).load(folder).runner("onnxruntime", model_path=exported).path == exported
    assert ngc_recognizer().runner("onnxruntime", model_path=exported, check_weights=True).path == exported
    # no checkpoint loaded (nemo-serve --model_path without --load_dir): the file's weights are the model,
    # its config is still checked
    assert Recognizer(small_qn_cfg()).runner("onnxruntime", model_path=exported).path == exported
    with pytest.raises(ModelFileMismatchError, match="its weights"):
        Recognizer(small_qn_cfg()).runner("onnxruntime", model_path=exported, check_weights=True)
    with pytest.raises(ModelFileMismatchError, match=r"another model config \(preprocessor differ\)"):
        Recognizer(small_qn_cfg(window="hamming")).runner("onnxruntime", model_path=exported)


def test_model_path_without_identity_is_checked_for_structure(tmp_path, caplog):
    from nemo_asr.export import ModelFileMismatchError
    from nemo_asr.inference_runner import ModelFileError

    recognizer = ngc_recognizer()
    plain = export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, str(tmp_path / "p.ts"),
                            "torchscript")
    runner = recognizer.runner("torchscript", model_path=plain)
    assert runner.metadata == {} and "could not be verified" in caplog.text
    fewer_labels = small_qn_cfg()
    fewer_labels["labels"] = fewer_labels["labels"][:-1]
    with pytest.raises(ModelFileMismatchError, match=r"gives 29 output classes but the model config's labels give 28"):
        Recognizer(fewer_labels).runner("torchscript", model_path=plain)
    features = export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                               str(tmp_path / "f.onnx"), features_input=True)
    with pytest.raises(ModelFileError, match=r"f.onnx does not run on audio \(batch, samples\)"):
        recognizer.runner("onnxruntime", model_path=features)
    with pytest.raises(ModelFileError, match=r"ONNX model file .*missing.onnx does not exist; check --model_path"):
        recognizer.runner("onnxruntime", model_path=str(tmp_path / "missing.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"junk.onnx is not an ONNX model ONNX Runtime can load"):
        recognizer.runner("onnxruntime", model_path=str(tmp_path / "junk.onnx"))
