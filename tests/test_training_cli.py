"""The training scripts' command line: NeMo 0.x flags, unique eval tags, one-line
errors, no experiment folder left behind by a run that never trained, --help
that builds nothing, progress bars in the data scripts."""
import json
import os
import struct
import subprocess
import sys
import tarfile

import pytest
import torch

import nemo_core

from conftest import PYTHON, REPO, subprocess_env

sys.path.insert(0, os.path.join(REPO, "examples", "asr"))
sys.path.insert(0, os.path.join(REPO, "examples"))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import jasper  # noqa: E402
import simplest_example  # noqa: E402

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
TINY = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
JASPER = os.path.join(REPO, "examples", "asr", "jasper.py")
TUTORIAL = os.path.join(REPO, "examples", "asr", "tutorial_jasper12x1SEP.py")


def an4_rows(split="train", count=None):
    with open(os.path.join(AN4, f"{split}_manifest.json")) as handle:
        rows = [json.loads(line) for line in handle][:count]
    for row in rows:  # written elsewhere, so absolute
        row["audio_filepath"] = os.path.join(AN4, row["audio_filepath"])
    return rows


def write_manifest(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return str(path)


def tiny_args(train, work, exp="exp", *extra):
    return ["--model_config", TINY, "--train_dataset", str(train), "--batch_size", "4", "--lr", "0.02",
            "--random_seed", "0", "--work_dir", str(work), "--exp_name", exp, "--log_freq", "1", *map(str, extra)]


def run_jasper(argv, capsys):
    """jasper.main in this process: (exit status, stdout, stderr)."""
    benchmark = torch.backends.cudnn.benchmark
    try:
        try:
            jasper.main(argv)
            status = 0
        except SystemExit as stop:
            status = stop.code
    finally:
        torch.backends.cudnn.benchmark = benchmark
    out, err = capsys.readouterr()
    return status, out, err


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def assert_one_line_error(status, err, prog, *words):
    assert status == 1, err
    assert "Traceback" not in err, err
    line = last_line(err)
    assert line.startswith(f"{prog}: error:") and line.endswith("(--debug shows the traceback)"), err
    for word in words:
        assert word in line, line


def tensorboard_tags(folder):
    """Scalar tags in the TensorBoard event files under ``folder`` (TFRecord framing, tensorboardX's proto)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as handle:
            data = handle.read()
        position = 0
        while position < len(data):
            (length,) = struct.unpack("<Q", data[position:position + 8])
            event = Event.FromString(data[position + 12:position + 12 + length])
            position += 12 + length + 4
            tags.update(value.tag for value in event.summary.value)
    return tags


# ------------------------------------------------------------------ eval tags
def test_eval_tags_keep_plain_file_names_when_they_differ():
    assert jasper.eval_tags(["/d/dev_clean.json", "/d/dev_other.json", "test.json"]) == [
        "dev_clean", "dev_other", "test"]


def test_eval_tags_tell_same_named_files_apart_by_folder_and_repeats_by_number():
    assert jasper.eval_tags(["/data/clean/dev.json", "/data/other/dev.json"]) == ["clean/dev", "other/dev"]
    # the nearest differing folder is enough; a manifest given again is numbered
    assert jasper.eval_tags(["/a/x/dev.json", "/b/x/dev.json", "/a/x/dev.json", "/c/test.json"]) == [
        "a/x/dev", "b/x/dev", "a/x/dev_2", "test"]
    assert jasper.eval_tags(["dev.json", "./dev.json", "dev.json"]) == ["dev", "dev_2", "dev_3"]
    # a number never takes the name of another set
    assert jasper.eval_tags(["/a/dev.json", "/a/dev.json", "/b/dev_2.json"]) == ["dev", "dev_3", "dev_2"]
    assert jasper.eval_tags(["/a/dev.json,/a/test.json", "/b/dev.json,/a/test.json"]) == [
        "a/dev+a/test", "b/dev+a/test"]


@pytest.mark.slow
def test_every_eval_set_is_evaluated_and_reported_under_its_own_tag(tmp_path):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=4))
    first = write_manifest(tmp_path / "clean" / "dev.json", an4_rows("test", 3))
    second = write_manifest(tmp_path / "other" / "dev.json", an4_rows("test")[3:6])
    checkpoints, events = tmp_path / "ckpt", tmp_path / "tb"
    argv = tiny_args(train, tmp_path / "work", "dup", "--max_steps", 1, "--eval_datasets", first, second, first,
                     "--checkpoint_dir", checkpoints, "--tensorboard_dir", events, "--checkpoint_save_freq", 1)
    result = subprocess.run([PYTHON, JASPER, *argv], env=subprocess_env(), capture_output=True, text=True, timeout=600)
    out, err = result.stdout, result.stderr  # a process of its own: TensorBoard events are complete when it ends
    assert result.returncode == 0, err[-3000:]
    tags = ["clean/dev", "other/dev", "clean/dev_2"]
    results = json.loads((tmp_path / "work" / "dup" / "results.json").read_text())
    assert list(results["eval"]) == tags
    for tag in tags:
        assert f"| {tag} | 1 |" in out
        assert f"Eval set {tag}:" in err and f"Evaluation WER_{tag}:" in err
    log = next((tmp_path / "work" / "dup").glob("log_globalrank-0*.txt")).read_text()
    assert all(f"Evaluation WER_{tag}:" in log for tag in tags)
    assert {f"Evaluation_WER_{tag}" for tag in tags} <= tensorboard_tags(events)
    # --checkpoint_dir and --tensorboard_dir replace the folders inside the experiment
    assert sorted(os.listdir(checkpoints))[-1] == "trainer-STEP-1.pt"
    assert not (tmp_path / "work" / "dup" / "checkpoints").exists()
    assert not (tmp_path / "work" / "dup" / "tensorboard").exists()


# ------------------------------------------------------------- NeMo 0.x flags
def test_nemo_flags_parse():
    parser = jasper.build_parser()
    args = parser.parse_args(["--train_manifest", "a.json,b.json"])
    assert args.train_dataset == "a.json,b.json"
    assert (args.cudnn_benchmark, args.create_tb_writer, args.checkpoint_dir, args.tensorboard_dir) == (
        True, True, None, None)
    args = parser.parse_args(["--train_dataset", "a.json", "--no-cudnn_benchmark", "--no-create_tb_writer",
                              "--checkpoint_dir", "ck", "--tensorboard_dir", "tb"])
    assert (args.cudnn_benchmark, args.create_tb_writer, args.checkpoint_dir, args.tensorboard_dir) == (
        False, False, "ck", "tb")
    assert parser.parse_args(["--cudnn_benchmark"]).cudnn_benchmark is True  # NeMo 0.x's store_true spelling
    for name in ("novograd", "sgd", "adam", "adamw"):
        assert parser.parse_args(["--optimizer", name]).optimizer == name


@pytest.mark.skipif(not hasattr(nemo_core.optim, "OPTIMIZER_NAMES"), reason="nemo_core.optim.OPTIMIZER_NAMES not yet")
def test_nemo_optimizer_spellings_are_choices():
    parser = jasper.build_parser()
    for name in ("adam_w", "lamb"):
        assert parser.parse_args(["--optimizer", name]).optimizer == name
        assert name in jasper.BETAS_OPTIMIZERS


def test_flags_reach_the_factory(tmp_path, capsys, monkeypatch):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=4))
    seen = {}

    def record(self, *args, **kwargs):  # the real factory and DAG, stopped where training would start
        seen.update(benchmark=torch.backends.cudnn.benchmark, tb_writer=self.tb_writer,
                    checkpoint_dir=self.checkpoint_dir, optimizer=kwargs["optimizer"],
                    betas=kwargs["optimization_params"].get("betas"))
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(nemo_core.NeuralModuleFactory, "train", record)
    status, _, err = run_jasper(tiny_args(train, tmp_path / "w", "a", "--no-cudnn_benchmark",
                                          "--no-create_tb_writer", "--optimizer", "adam"), capsys)
    assert status == 1 and "stopped by the test" in last_line(err)
    assert seen["benchmark"] is False and seen["tb_writer"] is None
    assert seen["checkpoint_dir"] == os.path.join(str(tmp_path / "w"), "a", "checkpoints")
    assert seen["optimizer"] == "adam" and seen["betas"] == (0.95, 0.5)
    status, _, err = run_jasper(tiny_args(train, tmp_path / "w", "b", "--optimizer", "sgd"), capsys)
    assert status == 1 and seen["benchmark"] is True and seen["tb_writer"] is not None
    assert seen["optimizer"] == "sgd" and seen["betas"] is None


# ------------------------------------------------- one line per error (jasper)
def test_missing_model_config_is_one_line(tmp_path, capsys):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=2))
    argv = tiny_args(train, tmp_path / "work")
    argv[1] = str(tmp_path / "nope.yaml")
    status, _, err = run_jasper(argv, capsys)
    assert_one_line_error(status, err, "jasper.py", "nope.yaml", "does not exist")
    assert not (tmp_path / "work").exists()


def test_missing_manifest_is_one_line_and_creates_nothing(tmp_path, capsys):
    status, _, err = run_jasper(tiny_args(tmp_path / "missing.json", tmp_path / "work"), capsys)
    assert_one_line_error(status, err, "jasper.py", "--train_dataset", "missing.json", "does not exist")
    train = write_manifest(tmp_path / "train.json", an4_rows(count=2))
    status, _, err = run_jasper(tiny_args(train, tmp_path / "work", "e", "--eval_datasets", train,
                                          tmp_path / "dev.json"), capsys)
    assert_one_line_error(status, err, "jasper.py", "--eval_datasets", "dev.json", "does not exist")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("extra, words", [
    (["--lm_order", "1"], ["--lm_order 1", "order 2 or more"]),
    (["--lm_order", "3"], ["--lm_order needs an eval set"]),
    (["--lm_order", "3", "--eval_datasets", "EVAL", "--beam_width", "0"], ["--beam_width 0"]),
    (["--lm_order", "3", "--eval_datasets", "EVAL", "--lm_grid_grow", "-1"], ["--lm_grid_grow -1"]),
])
def test_lm_options_are_checked_before_anything_is_built(tmp_path, capsys, extra, words):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=2))
    extra = [str(train) if value == "EVAL" else value for value in extra]
    status, _, err = run_jasper(tiny_args(train, tmp_path / "work", "lm", *extra), capsys)
    assert_one_line_error(status, err, "jasper.py", *words)
    assert not (tmp_path / "work").exists()


def test_unknown_optimizer_is_refused_by_argparse(tmp_path, capsys):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=2))
    status, _, err = run_jasper(tiny_args(train, tmp_path / "work", "x", "--optimizer", "adamx"), capsys)
    assert status == 2 and "argument --optimizer: invalid choice: 'adamx'" in err and "novograd" in err
    assert not (tmp_path / "work").exists()


def test_missing_load_dir_is_one_line_before_anything_is_built(tmp_path, capsys):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=2))
    status, _, err = run_jasper(tiny_args(train, tmp_path / "work", "x", "--load_dir", tmp_path / "no_such"), capsys)
    assert_one_line_error(status, err, "jasper.py", "--load_dir", "no_such", "does not exist")
    assert "NeuralModuleFactory" not in err and not (tmp_path / "work").exists()


def test_debug_shows_the_traceback(tmp_path):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=2))
    with pytest.raises(jasper.UserError, match="no_such"):
        jasper.main(tiny_args(train, tmp_path / "work") + ["--load_dir", "no_such", "--debug"])


# ------------------------------------ no empty experiment folder after a failure
def test_missing_audio_leaves_no_experiment_folder(tmp_path, capsys):
    train = write_manifest(tmp_path / "train.json", [{"audio_filepath": str(tmp_path / "gone.wav"),
                                                      "duration": 1.0, "text": "stop"}])
    status, _, err = run_jasper(tiny_args(train, tmp_path / "work", "new"), capsys)
    assert_one_line_error(status, err, "jasper.py", "No utterances left")
    assert "Removed" in err and not (tmp_path / "work").exists()
    # an experiment folder that existed (here: with a note of the user's) stays, with what it held
    exp = tmp_path / "kept" / "old"
    exp.mkdir(parents=True)
    (exp / "notes.txt").write_text("mine")
    status, _, err = run_jasper(tiny_args(train, tmp_path / "kept", "old"), capsys)
    assert status == 1 and "Removed" not in err
    assert (exp / "notes.txt").read_text() == "mine" and (exp / "config.yaml").exists()
    assert (exp / "tensorboard").exists()  # a resumed experiment is left as the run left it
    # a work_dir that existed stays; only the new experiment folder goes
    status, _, err = run_jasper(tiny_args(train, tmp_path / "kept", "fresh"), capsys)
    assert status == 1 and not (tmp_path / "kept" / "fresh").exists() and exp.exists()


def test_a_new_folder_holding_checkpoints_is_kept(tmp_path, capsys):
    folders = jasper.folders_to_create([tmp_path / "a" / "b" / "exp", tmp_path / "a" / "c", tmp_path / "d"])
    assert folders == [str(tmp_path / "a"), str(tmp_path / "d")]
    (tmp_path / "a" / "b" / "exp" / "checkpoints").mkdir(parents=True)
    (tmp_path / "a" / "b" / "exp" / "checkpoints" / "JasperEncoder-STEP-5.pt").write_bytes(b"")
    (tmp_path / "d").mkdir()
    jasper.remove_created_folders(folders, None)
    assert (tmp_path / "a" / "b" / "exp" / "checkpoints" / "JasperEncoder-STEP-5.pt").exists()
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_a_failure_after_the_first_step_keeps_the_folder(tmp_path, capsys, monkeypatch):
    train = write_manifest(tmp_path / "train.json", an4_rows(count=4))

    class DiskFull(nemo_core.ActionCallback):  # a failure at the end of step 1
        def on_step_end(self, state):
            raise OSError(28, "No space left on device", "somewhere")

    real_train = nemo_core.NeuralModuleFactory.train
    monkeypatch.setattr(nemo_core.NeuralModuleFactory, "train", lambda self, tensors, callbacks=None, **kwargs:
                        real_train(self, tensors, callbacks=list(callbacks) + [DiskFull()], **kwargs))
    status, _, err = run_jasper(tiny_args(train, tmp_path / "work", "ran", "--max_steps", 3), capsys)
    assert_one_line_error(status, err, "jasper.py", "No space left on device")
    assert "Removed" not in err and (tmp_path / "work" / "ran" / "config.yaml").exists()


# ------------------------------------------------------------ the tutorial
def test_tutorial_help_builds_nothing(tmp_path):
    result = subprocess.run([PYTHON, TUTORIAL, "--help"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: tutorial_jasper12x1SEP.py") and "examples/asr/jasper.py" in result.stdout
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_tutorial_error_is_one_line(tmp_path):
    (tmp_path / "jasper12x1SEP").write_text("a file where the tutorial's log folder goes")
    result = subprocess.run([PYTHON, TUTORIAL], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last_line(result.stderr).startswith("tutorial_jasper12x1SEP.py: error:") and "jasper12x1SEP" in \
        last_line(result.stderr)
    debug = subprocess.run([PYTHON, TUTORIAL, "--debug"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                           text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# ------------------------------------------------------ the simplest example
def test_simplest_example_refuses_an_unknown_optimizer(capsys):
    with pytest.raises(SystemExit) as stop:
        simplest_example.main(["--optimizer", "adamx"])
    assert stop.value.code == 2 and "invalid choice: 'adamx'" in capsys.readouterr().err


def test_simplest_example_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        simplest_example.main(["--lr", "-1", "--max_steps", "1", "--optimizer", "sgd"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "Traceback" not in err
    assert last_line(err).startswith("simplest_example.py: error:") and "-1" in last_line(err)


# ------------------------------------------------------------ data scripts
def run_script(name, *args, capsys):
    """``scripts/<name>``'s main in this process: (exit status, stderr)."""
    module = __import__(name[:-3])
    try:
        module.main([str(a) for a in args])
        status = 0
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err


def test_get_librispeech_wrong_archive_is_one_line(tmp_path, capsys):
    (tmp_path / "downloads" / "other").mkdir(parents=True)
    (tmp_path / "downloads" / "other" / "readme.txt").write_text("not LibriSpeech")
    with tarfile.open(tmp_path / "downloads" / "dev-clean.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "downloads" / "other", arcname="other")
    args = ["--data_root", tmp_path / "data", "--archive_dir", tmp_path / "downloads"]
    status, err = run_script("get_librispeech_data.py", *args, capsys=capsys)
    assert_one_line_error(status, err, "get_librispeech_data.py", "dev-clean.tar.gz", "LibriSpeech/dev-clean")
    (tmp_path / "downloads" / "dev-clean.tar.gz").write_bytes(b"\x1f\x8b truncated")
    status, err = run_script("get_librispeech_data.py", *args, capsys=capsys)
    assert_one_line_error(status, err, "get_librispeech_data.py", "dev-clean.tar.gz", "not a readable")


def test_get_librispeech_extraction_shows_progress(tmp_path, monkeypatch, capsys):
    import get_librispeech_data

    (tmp_path / "src" / "LibriSpeech" / "dev-clean").mkdir(parents=True)
    (tmp_path / "src" / "LibriSpeech" / "dev-clean" / "a.txt").write_bytes(os.urandom(300_000))
    archive = tmp_path / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "LibriSpeech", arcname="LibriSpeech")
    monkeypatch.setattr(get_librispeech_data, "show_progress", lambda: True)
    tree = get_librispeech_data.extract(str(archive), str(tmp_path / "data"), "dev-clean")
    assert open(os.path.join(tree, "a.txt"), "rb").read() == (
        tmp_path / "src" / "LibriSpeech" / "dev-clean" / "a.txt").read_bytes()
    err = capsys.readouterr().err
    assert "extract dev-clean.tar.gz" in err and "100%" in err


def test_process_an4_missing_tree_is_one_line(tmp_path, capsys):
    status, err = run_script("process_an4_data.py", "--data_root", tmp_path, capsys=capsys)
    assert_one_line_error(status, err, "process_an4_data.py", "an4_train.fileids", "--data_root")


def test_merge_manifests_missing_manifest_is_one_line(tmp_path, capsys):
    status, err = run_script("merge_manifests.py", "--manifests", tmp_path / "nope.json", "--output",
                             tmp_path / "o.json", capsys=capsys)
    assert_one_line_error(status, err, "merge_manifests.py", "nope.json", "does not exist")


def test_speed_perturb_missing_audio_is_one_line_before_any_work(tmp_path, capsys):
    rows = an4_rows(count=2) + [{"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": "no"}]
    manifest = write_manifest(tmp_path / "m.json", rows)
    status, err = run_script("speed_perturb_manifest.py", "--input_manifest", manifest, "--output_dir",
                             tmp_path / "out", "--workers", 1, capsys=capsys)
    assert_one_line_error(status, err, "speed_perturb_manifest.py", "m.json", "gone.wav", "utterance 3")
    assert not (tmp_path / "out").exists()
    status, err = run_script("speed_perturb_manifest.py", "--input_manifest", manifest, "--output_dir",
                             tmp_path / "out", "--rates", 0.9, -1, capsys=capsys)
    assert status == 2 and "--rates must be positive, got -1" in err and not (tmp_path / "out").exists()


def test_make_synthetic_speech_error_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    status, err = run_script("make_synthetic_speech.py", "--output_dir", tmp_path / "afile" / "corpus",
                             "--train", 1, "--dev", 1, "--test", 1, "--workers", 1, capsys=capsys)
    # without espeak-ng/flite the (one-line) error says so instead
    assert_one_line_error(status, err, "make_synthetic_speech.py")
    assert "afile" in last_line(err) or "install_system_deps.sh" in last_line(err)
    status, err = run_script("make_synthetic_speech.py", "--output_dir", tmp_path, "--train", -1, capsys=capsys)
    assert status == 2 and "argument --train: must be 0 or more, got -1" in err
