"""nemo-transcribe, jasper_infer.py, build_lm.py and tune_lm_params.py on the command line:
per-file failures, checks before any work, --ckpt_pattern, beam-search offsets, one-line errors.

The model is the small NGC-format QuartzNet of ``tests/data/ngc_compat`` (random
weights: its text is meaningless but deterministic), which shares its folder
with a second model, as an NGC download does.
"""
import importlib.util
import io
import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from nemo_asr import transcribe as transcribe_cli

from conftest import REPO

NGC = os.path.join(REPO, "tests", "data", "ngc_compat")
CONFIG = os.path.join(NGC, "small_qn.yaml")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
WAV = os.path.join(AN4, "wav", "an46-mmap-b.wav")
WAV2 = os.path.join(AN4, "wav", "an104-mrcb-b.wav")
LM = os.path.join(REPO, "tests", "data", "lm", "hot_hat.arpa")
MODEL = ["--model_config", CONFIG, "--load_dir", NGC, "--ckpt_pattern", "small_qn"]


def load_script(relative):
    path = os.path.join(REPO, relative)
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0] + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def transcribe(argv):
    """``nemo-transcribe argv`` in this process; its return value (0) or exit status."""
    return transcribe_cli.main([str(a) for a in argv])


def one_line_error(capsys, main, argv, *expected):
    """Run ``main(argv)``: it must exit 1 with exactly one stderr line, ``prog: error: ...`` naming ``expected``."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert ": error: " in lines[0], lines[0]
    for text in expected:
        assert str(text) in lines[0], lines[0]
    return lines[0]


class FakeTerminal(io.StringIO):
    """stderr that says it is a terminal, so tqdm (``disable=None``) draws its bars into it."""

    def isatty(self):
        return True


@pytest.fixture
def bad_files(tmp_path):
    """A header-only WAV, a float WAV holding NaN and inf, and a path that does not exist."""
    empty, nan = tmp_path / "empty.wav", tmp_path / "nan.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    samples = sf.read(WAV, dtype="float32")[0]
    samples[100], samples[200] = np.nan, np.inf
    sf.write(nan, samples, 16000, subtype="FLOAT")
    return {"empty": str(empty), "nan": str(nan), "missing": str(tmp_path / "missing.wav")}


# ----------------------------------------------------------------- nemo-transcribe
def test_bad_files_fail_alone_and_are_reported(tmp_path, capsys, bad_files):
    out = tmp_path / "hyp.json"
    argv = [*MODEL, WAV, bad_files["empty"], bad_files["nan"], bad_files["missing"], WAV2,
            "--output_format", "manifest", "--output", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        transcribe(argv)
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nemo-transcribe: error:")]
    assert len(errors) == 3
    assert bad_files["empty"] in errors[0] and "no samples" in errors[0]
    assert bad_files["nan"] in errors[1] and "2 non-finite" in errors[1]
    assert bad_files["missing"] in errors[2] and "does not exist" in errors[2]
    records = [json.loads(line) for line in open(out)]
    assert [r["audio_filepath"] for r in records] == [WAV, bad_files["empty"], bad_files["nan"],
                                                      bad_files["missing"], WAV2]
    assert ["error" in r for r in records] == [False, True, True, True, False]
    assert all("pred_text" in r for r in (records[0], records[4]))
    assert not any("pred_text" in r for r in records[1:4])
    assert records[2]["error"] == errors[1].split("nemo-transcribe: error: ")[1]
    # plain output lists the transcribed files only; the same text as before
    with pytest.raises(SystemExit):
        transcribe([*MODEL, WAV, bad_files["empty"]])
    stdout = capsys.readouterr().out.splitlines()
    assert stdout == [f"{WAV}\t{records[0]['pred_text']}"]


def test_manifest_needs_only_audio_paths(tmp_path, capsys):
    manifest = tmp_path / "in.json"
    shutil.copy(WAV, tmp_path / "a.wav")
    manifest.write_text(json.dumps({"audio_filepath": "a.wav"}) + "\n"
                        + json.dumps({"audio_filepath": WAV2, "text": "reference"}) + "\n"
                        + json.dumps({"audio_filepath": WAV, "duration": 1.0}) + "\n")
    assert transcribe([*MODEL, "--manifest", manifest, "--output_format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["audio_filepath"] for r in records] == [str(tmp_path / "a.wav"), WAV2, WAV]
    assert [r["duration"] for r in records] == [sf.info(WAV).duration, sf.info(WAV2).duration, 1.0]
    assert "text" not in records[0] and records[1]["text"] == "reference" and "text" not in records[2]
    assert records[0]["pred_text"] == records[2]["pred_text"]  # the same audio
    assert not any("error" in r for r in records)


def test_manifest_line_errors_name_the_line(tmp_path, capsys, bad_files):
    manifest = tmp_path / "in.json"
    manifest.write_text(json.dumps({"audio_filepath": WAV}) + "\n"
                        + json.dumps({"audio_filepath": bad_files["empty"], "text": "x", "duration": 2.0}) + "\n"
                        + json.dumps({"audio_filepath": WAV, "offset": 5.0}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        transcribe([*MODEL, "--manifest", manifest, "--output_format", "manifest"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("nemo-transcribe: error:")]
    assert len(errors) == 2
    assert f"{manifest}:2: audio file {bad_files['empty']} has no samples" in errors[0]
    assert f"{manifest}:3: {WAV}: segment offset 5 s starts past the end" in errors[1]
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert records[1] == {"audio_filepath": bad_files["empty"], "duration": 2.0, "text": "x",
                          "error": errors[0].split("error: ")[1]}
    assert "pred_text" in records[0] and "error" in records[2]


def test_lm_offsets_are_the_beam_search_words(tmp_path, capsys):
    argv = [*MODEL, WAV, WAV2, "--output_format", "json", "--offsets", "--lm_path", LM, "--alpha", 2.0,
            "--beam_width", 8]
    assert transcribe_cli.main([str(a) for a in argv]) == 0
    records = json.loads(capsys.readouterr().out)
    for record in records:
        words = record["words"]
        assert record["pred_text"] and [w["word"] for w in words] == record["pred_text"].split()
        times = [t for w in words for t in (w["start"], w["end"])]
        assert times == sorted(times) and times[0] >= 0 and times[-1] <= record["duration"] + 1e-6
    # without the LM the offsets follow the greedy text
    assert transcribe([*MODEL, WAV, "--output_format", "json", "--offsets"]) == 0
    (greedy,) = json.loads(capsys.readouterr().out)
    assert [w["word"] for w in greedy["words"]] == greedy["pred_text"].split()
    assert greedy["pred_text"] != records[0]["pred_text"]


def test_ckpt_pattern_picks_one_model_of_an_ngc_folder(capsys):
    message = one_line_error(capsys, transcribe_cli.main, ["--model_config", CONFIG, "--load_dir", NGC, WAV],
                             "holds several checkpoint sets", "small_jasper_dr (step 247400)",
                             "small_qn (step 247400)", "--ckpt_pattern")
    assert message.startswith("nemo-transcribe: error: ")
    one_line_error(capsys, transcribe_cli.main, [*MODEL[:-1], "quartznet15x5", WAV],
                   "No checkpoint set", "matches --ckpt_pattern 'quartznet15x5'", "small_jasper_dr", "small_qn")
    infer = load_script("examples/asr/jasper_infer.py")
    one_line_error(capsys, infer.main, ["--model_config", CONFIG, "--load_dir", NGC, "--eval_datasets",
                                        os.path.join(AN4, "test_manifest.json")], "small_qn (step 247400)")
    results = infer.main([*MODEL, "--eval_datasets", os.path.join(AN4, "test_manifest.json"), "--batch_size", "10"])
    assert results["test_manifest"]["utterances"] == 10


@pytest.mark.parametrize("case", ["config", "load_dir", "audio", "output", "lm", "manifest", "no_input"])
def test_transcribe_errors_are_one_line(tmp_path, capsys, case):
    argv = {
        "config": (["--model_config", tmp_path / "nope.yaml", "--load_dir", NGC, WAV], "nope.yaml"),
        "load_dir": (["--model_config", CONFIG, "--load_dir", tmp_path / "ckpts", WAV], "ckpts does not exist"),
        "audio": ([*MODEL, tmp_path / "gone.wav"], "gone.wav does not exist"),
        "output": ([*MODEL, WAV, "--output", tmp_path / "no" / "hyp.txt"], "folder"),
        "lm": ([*MODEL, WAV, "--lm_path", tmp_path / "lm.arpa"], "lm.arpa does not exist"),
        "manifest": ([*MODEL, "--manifest", tmp_path / "m.json"], "m.json does not exist"),
        "no_input": (MODEL, "give audio files or --manifest"),
    }[case]
    line = one_line_error(capsys, transcribe_cli.main, *argv)
    assert line.startswith("nemo-transcribe: error: ")


def test_missing_kenlm_is_named_before_any_work(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kenlm", None)  # as if not installed
    one_line_error(capsys, transcribe_cli.main, [*MODEL, WAV, "--lm_path", LM],
                   "'kenlm' package", "pip install 'nemo-typed-modules[lm]'")


def test_manifest_progress_bar_and_help(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        transcribe_cli.main(["--help"])
    assert exit_info.value.code == 0 and "--ckpt_pattern" in capsys.readouterr().out
    manifest = tmp_path / "in.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": WAV}) + "\n" for _ in range(3)))
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    transcribe([*MODEL, "--manifest", manifest, "--batch_size", 1, "--output", tmp_path / "out.txt"])
    assert "infer" in terminal.getvalue() and "/3 " in terminal.getvalue()


# ------------------------------------------------------ jasper_infer.py and the LM tools
@pytest.mark.parametrize("case", ["config", "load_dir", "manifest", "lm", "output"])
def test_jasper_infer_errors_are_one_line(tmp_path, capsys, case):
    infer = load_script("examples/asr/jasper_infer.py")
    data = ["--eval_datasets", os.path.join(AN4, "test_manifest.json")]
    argv = {
        "config": (["--model_config", tmp_path / "nope.yaml", "--load_dir", NGC, *data], "nope.yaml"),
        "load_dir": (["--model_config", CONFIG, "--load_dir", tmp_path / "ckpts", *data], "ckpts does not exist"),
        "manifest": ([*MODEL, "--eval_datasets", tmp_path / "m.json"], "m.json"),
        "lm": ([*MODEL, *data, "--lm_path", tmp_path / "lm.arpa"], "lm.arpa does not exist"),
        "output": ([*MODEL, *data, "--save_logprobs", tmp_path / "no" / "lp.pt"], "--save_logprobs"),
    }[case]
    assert one_line_error(capsys, infer.main, *argv).startswith("jasper_infer.py: error: ")


def test_lm_tools_errors_are_one_line_and_build_shows_progress(tmp_path, capsys, monkeypatch):
    build = load_script("scripts/build_lm.py")
    tune = load_script("scripts/tune_lm_params.py")
    one_line_error(capsys, build.main, ["--input", tmp_path / "text.txt", "--output", tmp_path / "lm.arpa"],
                   "text.txt does not exist")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ol\xe9\n".encode("latin-1"))
    one_line_error(capsys, build.main, ["--input", tmp_path / "latin1.txt", "--output", tmp_path / "lm.arpa"],
                   "latin1.txt:1: not UTF-8")
    (tmp_path / "text.txt").write_text("hot hat\nhot\n")
    one_line_error(capsys, build.main, ["--input", tmp_path / "text.txt", "--output", tmp_path / "no" / "lm.arpa"],
                   "folder")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    build.main(["--input", str(tmp_path / "text.txt"), "--output", str(tmp_path / "lm.arpa"), "--order", "2",
                "--backend", "python"])
    assert "counting n-grams" in terminal.getvalue() and "writing ARPA" in terminal.getvalue()
    monkeypatch.undo()
    one_line_error(capsys, tune.main, ["--logprobs", tmp_path / "lp.pt", "--lm_path", tmp_path / "lm.arpa"],
                   "lp.pt does not exist", "--save_logprobs")
    (tmp_path / "junk.pt").write_text("not torch")
    one_line_error(capsys, tune.main, ["--logprobs", tmp_path / "junk.pt", "--lm_path", tmp_path / "lm.arpa"],
                   "junk.pt cannot be read")
    torch.save({"dev": {"log_probs": [], "references": [], "labels": [" ", "a"]}}, tmp_path / "lp.pt")
    one_line_error(capsys, tune.main, ["--logprobs", tmp_path / "lp.pt", "--lm_path", tmp_path / "nope.arpa"],
                   "nope.arpa does not exist")
    one_line_error(capsys, tune.main, ["--logprobs", tmp_path / "lp.pt", "--lm_path", tmp_path / "lm.arpa",
                                       "--dataset", "test"], "--dataset test", "holds dev")
    one_line_error(capsys, tune.main, ["--logprobs", tmp_path / "lp.pt", "--lm_path", tmp_path / "lm.arpa",
                                       "--grow", "-2"], "--grow -2")
