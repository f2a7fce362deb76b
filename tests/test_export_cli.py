"""Command lines around exported models: scripts/export_jasper_to_onnx.py (both forms),
scripts/quantize.py, and nemo-transcribe's --model_path check: one stderr line and
exit status 1 for every bad input."""
import os
import shutil
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from conftest import REPO  # noqa: E402

NGC = os.path.join(REPO, "tests", "data", "ngc_compat")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
CONFIG = os.path.join(NGC, "small_qn.yaml")
ENCODER = os.path.join(NGC, "small_qn-JasperEncoder-STEP-247400.pt")
DECODER = os.path.join(NGC, "small_qn-JasperDecoderForCTC-STEP-247400.pt")
sys.path.insert(0, os.path.join(REPO, "scripts"))

import export_jasper_to_onnx  # noqa: E402
import quantize  # noqa: E402


@pytest.fixture(autouse=True)
def _export_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEMO_CACHE_DIR", str(tmp_path / "export_cache"))


def fails_with_one_line(main, argv, capsys, *fragments):
    """Run ``main(argv)``; it must exit 1 with one ``prog: error: ...`` stderr line holding ``fragments``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, lines
    assert errors[0].endswith("(--debug shows the traceback)")
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def test_nemo_form_writes_encoder_and_decoder_and_the_pipeline(tmp_path, capsys):
    enc, dec, pipe = (str(tmp_path / name) for name in ("encoder.onnx", "decoder.onnx", "qn.onnx"))
    written = export_jasper_to_onnx.main(["--config", CONFIG, "--nn_encoder", ENCODER, "--nn_decoder", DECODER,
                                          "--onnx_encoder", enc, "--onnx_decoder", dec, "--output", pipe])
    assert written == [pipe, enc, dec]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"wrote {pipe}", f"wrote {enc}", f"wrote {dec}"]
    assert "JasperEncoder, audio_signal (B, 64, T) + length" in lines[1] and "KB)" in lines[1]
    assert "log-probs (B, T, 29)" in lines[2]
    # the two files chained give NeMo 0.x's reference log-probs for its features
    features = np.load(os.path.join(NGC, "features.npy"))
    lengths = np.load(os.path.join(NGC, "feature_lengths.npy"))
    encoded, encoded_len = session(enc).run(None, {"audio_signal": features, "length": lengths})
    (log_probs,) = session(dec).run(None, {"encoder_output": encoded})
    reference = np.load(os.path.join(NGC, "small_qn_log_probs.npy"))
    for i, n in enumerate(encoded_len):
        assert np.abs(log_probs[i, :n] - reference[i, :n]).max() < 1e-3
    import onnx

    for path in (enc, dec, pipe):
        meta = {p.key: p.value for p in onnx.load(path).metadata_props}
        assert meta["nemo_asr.checkpoint"] == f"{ENCODER}, {DECODER}"
    # the pipeline file is accepted as --model_path for these checkpoints; the encoder alone is refused
    from nemo_asr.export import ModelFileMismatchError
    from nemo_asr.inference import Recognizer
    from nemo_asr.model_config import load_model_config

    recognizer = Recognizer(load_model_config(CONFIG))
    recognizer.encoder.restore_from(ENCODER)
    recognizer.decoder.restore_from(DECODER)
    assert recognizer.runner("onnxruntime", model_path=pipe).path == pipe
    with pytest.raises(ModelFileMismatchError, match="takes features, not audio"):
        recognizer.runner("onnxruntime", model_path=enc)


def test_export_script_bad_inputs_are_one_line(tmp_path, capsys):
    main = export_jasper_to_onnx.main
    out = ["--onnx_encoder", str(tmp_path / "e.onnx")]
    fails_with_one_line(main, ["--config", str(tmp_path / "none.yaml"), "--encoder", ENCODER, "--decoder", DECODER,
                               *out], capsys, "model config", "none.yaml does not exist")
    fails_with_one_line(main, ["--config", CONFIG, "--nn_encoder", str(tmp_path / "enc.pt"), "--nn_decoder", DECODER,
                               *out], capsys, f"--encoder {tmp_path / 'enc.pt'} does not exist")
    fails_with_one_line(main, ["--config", CONFIG, "--encoder", ENCODER, "--decoder", DECODER], capsys,
                        "nothing to write: pass --output FILE, or --onnx_encoder FILE")
    # a checkpoint of another model: names the file, the config and what does not fit
    other = os.path.join(NGC, "small_jasper_dr-JasperEncoder-STEP-247400.pt")
    fails_with_one_line(main, ["--config", CONFIG, "--encoder", other, "--decoder", DECODER, *out], capsys,
                        f"--encoder {other} does not fit the JasperEncoder built from {CONFIG}", "mis-shaped",
                        "pass the checkpoint trained with this config")
    fails_with_one_line(main, ["--config", CONFIG, "--encoder", DECODER, "--decoder", DECODER, *out], capsys,
                        f"--encoder {DECODER} does not fit the JasperEncoder")
    assert not os.path.exists(tmp_path / "e.onnx")


def test_missing_onnx_names_the_deploy_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an environment without the package sees
    fails_with_one_line(export_jasper_to_onnx.main, ["--config", CONFIG, "--encoder", ENCODER, "--decoder", DECODER,
                                                     "--output", str(tmp_path / "m.onnx")], capsys,
                        "ONNX export needs the 'onnx' package", "pip install 'nemo-typed-modules[deploy]'")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    from nemo_asr.inference_runner import InferenceRunner
    from nemo_core.utils.cli import MissingExtraError

    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(MissingExtraError, match=r"onnxruntime backend needs .*\[deploy\]"):
        InferenceRunner("onnxruntime", path=str(tmp_path / "m.onnx"))


def test_help_does_no_work(tmp_path, capsys):
    for main in (export_jasper_to_onnx.main, quantize.main):
        with pytest.raises(SystemExit) as info:
            main(["--help"])
        assert info.value.code == 0 and "--debug" in capsys.readouterr().out
    assert os.listdir(tmp_path) == []


def checkpoint_folder(tmp_path, name, perturb=0.0):
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(ENCODER, folder / "JasperEncoder-STEP-3.pt")
    state = torch.load(DECODER)
    torch.save({k: v + perturb for k, v in state.items()}, folder / "JasperDecoderForCTC-STEP-3.pt")
    return str(folder)


def test_quantize_bad_inputs_are_one_line(tmp_path, capsys):
    folder = checkpoint_folder(tmp_path, "ckpt")
    base = ["--model_config", CONFIG, "--output", str(tmp_path / "int8.onnx")]
    fails_with_one_line(quantize.main, [*base, "--load_dir", str(tmp_path / "none"), "--calibration_manifest",
                                        os.path.join(AN4, "train_manifest.json")], capsys,
                        f"Checkpoint folder {tmp_path / 'none'} does not exist")
    fails_with_one_line(quantize.main, [*base, "--load_dir", folder, "--calibration_manifest",
                                        str(tmp_path / "none.json")], capsys, "none.json does not exist")
    fails_with_one_line(quantize.main, [*base, "--load_dir", folder, "--num_samples", "0",
                                        "--calibration_manifest", os.path.join(AN4, "train_manifest.json")], capsys,
                        "--num_samples must be at least 1")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_transcribe_refuses_a_model_path_from_another_checkpoint(tmp_path, capsys):
    from nemo_asr import transcribe
    from nemo_asr.inference import Recognizer
    from nemo_asr.model_config import load_model_config

    exported_from = checkpoint_folder(tmp_path, "a")
    model_path = Recognizer(load_model_config(CONFIG)).load(exported_from).runner("torchscript").path
    other = checkpoint_folder(tmp_path, "b", perturb=0.01)
    wav = os.path.join(AN4, "wav", "an46-mmap-b.wav")
    args = ["--model_config", CONFIG, "--backend", "torchscript", wav]
    line = fails_with_one_line(transcribe.main, [*args, "--load_dir", other, "--model_path", model_path], capsys,
                               f"Model file {model_path} does not hold the model", f"step 3 in {exported_from}",
                               f"step 3 in {other}", "leave out --model_path")
    assert line.startswith("nemo-transcribe: error: ")
    fails_with_one_line(transcribe.main, [*args, "--load_dir", other, "--model_path", str(tmp_path / "x.ts")],
                        capsys, f"{tmp_path / 'x.ts'} does not exist")
    # the right checkpoint: accepted
    assert transcribe.main([*args, "--load_dir", exported_from, "--model_path", model_path]) == 0
