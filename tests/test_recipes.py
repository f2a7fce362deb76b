"""End-to-end runs of the user scripts in examples/asr/ on tiny data."""
import json
import os
import runpy
import shutil
import subprocess

import pytest

import nemo_core

from conftest import PYTHON, REPO, free_port, subprocess_env

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
TRAIN, TEST = os.path.join(AN4, "train_manifest.json"), os.path.join(AN4, "test_manifest.json")
TINY = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
NGC = os.path.join(REPO, "tests", "data", "ngc_compat")
EXAMPLES = os.path.join(REPO, "examples", "asr")
SCRIPTS = os.path.join(REPO, "scripts")


def run(script, *args, launcher=(), cwd=None, timeout=600):
    cmd = [PYTHON, *launcher, script, *map(str, args)]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def train_args(work_dir, exp, *extra):
    return ["--model_config", TINY, "--train_dataset", TRAIN, "--eval_datasets", TEST, TRAIN,
            "--batch_size", 10, "--lr", 0.02, "--beta1", 0.8, "--warmup_steps", 20, "--random_seed", 0,
            "--work_dir", work_dir, "--exp_name", exp, "--log_freq", 50, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny QuartzNet trained by jasper.py on the 30 AN4 utterances."""
    work = tmp_path_factory.mktemp("work")
    result = run(os.path.join(EXAMPLES, "jasper.py"),
                 *train_args(work, "an4", "--max_steps", 240, "--checkpoint_save_freq", 120))
    return work / "an4", result


@pytest.mark.slow
def test_jasper_script_trains_and_fills_the_experiment_folder(trained):
    exp, result = trained
    files = os.listdir(exp)
    assert "config.yaml" in files and "results.json" in files and "tensorboard" in files
    assert any(f.startswith("log_globalrank-0") for f in files)
    assert sorted(os.listdir(exp / "checkpoints")) == [
        "JasperDecoderForCTC-STEP-120.pt", "JasperDecoderForCTC-STEP-240.pt", "JasperEncoder-STEP-120.pt",
        "JasperEncoder-STEP-240.pt", "trainer-STEP-120.pt", "trainer-STEP-240.pt"]
    results = json.loads((exp / "results.json").read_text())
    assert set(results["eval"]) == {"test_manifest", "train_manifest"}
    assert results["eval"]["train_manifest"]["wer"] <= 0.1  # it learned its training set
    assert "| train_manifest | 240 |" in result.stdout
    assert "--finetune_from" in run(os.path.join(EXAMPLES, "jasper.py"), "--help").stdout


@pytest.mark.slow
def test_resume_from_load_dir(trained, tmp_path):
    exp, _ = trained
    result = run(os.path.join(EXAMPLES, "jasper.py"),
                 *train_args(tmp_path, "resumed", "--max_steps", 250, "--load_dir", exp / "checkpoints"))
    assert "Resumed from" in result.stderr and "at step 240" in result.stderr
    assert json.loads((tmp_path / "resumed" / "results.json").read_text())["train"]["step"] == 250


@pytest.mark.slow
def test_finetune_from_ngc_checkpoints(tmp_path):
    config = os.path.join(NGC, "small_qn.yaml")
    args = ["--model_config", config, "--train_dataset", TRAIN, "--batch_size", 10, "--max_steps", 2,
            "--work_dir", tmp_path, "--random_seed", 0, "--finetune_from", NGC, "--finetune_pattern", "small_qn"]
    same = run(os.path.join(EXAMPLES, "jasper.py"), *args, "--exp_name", "same")
    assert "Encoder initialised from" in same.stderr and "Decoder initialised from" in same.stderr
    # a vocabulary of 10 labels: the 29-class decoder cannot be used and is re-initialised
    small_vocab = tmp_path / "small_vocab.yaml"
    text = open(config).read().replace(
        'labels: [" ", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",\n'
        '         "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "\'"]',
        'labels: [" ", "e", "g", "n", "o", "p", "r", "s", "t", "y"]')
    assert text != open(config).read()
    small_vocab.write_text(text)
    other = run(os.path.join(EXAMPLES, "jasper.py"), *args[:1], small_vocab, *args[2:], "--exp_name", "other")
    assert "vocabulary differs, so the decoder is re-initialised" in other.stderr


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["launch", "torchrun"])
def test_two_process_training(tmp_path, launcher):
    module = "torch.distributed.launch" if launcher == "launch" else "torch.distributed.run"
    result = run(os.path.join(EXAMPLES, "jasper.py"), *train_args(tmp_path, "ddp", "--max_steps", 4),
                 launcher=("-m", module, "--nproc_per_node=2", f"--master_port={free_port()}"))
    assert "world size 2" in result.stderr
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["train"]["step"] == 4 and "test_manifest" in results["eval"]


@pytest.mark.slow
def test_infer_with_language_model_and_tuning(trained, tmp_path):
    exp, _ = trained
    lm = tmp_path / "an4.arpa"
    text = tmp_path / "text.txt"
    text.write_text("".join(json.loads(line)["text"] + "\n" for line in open(TRAIN)))
    run(os.path.join(SCRIPTS, "build_lm.py"), "--input", text, "--output", lm, "--order", 2)
    out = tmp_path / "wer.json"
    saved = tmp_path / "logprobs.pt"
    result = run(os.path.join(EXAMPLES, "jasper_infer.py"), "--model_config", TINY, "--eval_datasets", TRAIN,
                 "--load_dir", exp / "checkpoints", "--lm_path", lm, "--beam_width", 8, "--alpha", 0.5,
                 "--beta", 0.5, "--num_cpus", 1, "--save_logprobs", saved, "--output", out)
    wer = json.loads(out.read_text())["train_manifest"]
    assert wer["greedy_wer"] <= 0.1 and wer["beam_wer"] <= 0.1
    assert "| train_manifest | 30 |" in result.stdout
    tuned = run(os.path.join(SCRIPTS, "tune_lm_params.py"), "--logprobs", saved, "--lm_path", lm,
                "--alpha", 0, 1, 1, "--beta", 0, 1, 1, "--beam_width", 4, "--num_cpus", 1, "--grow", 0)
    assert tuned.stdout.count("WER") == 5 and "best: alpha" in tuned.stdout  # exactly the 2 x 2 grid


@pytest.mark.slow
def test_transcribe_files_and_manifest_with_offsets(trained, tmp_path):
    exp, _ = trained
    rows = [json.loads(line) for line in open(TRAIN)][:3]
    files = [os.path.join(AN4, r["audio_filepath"]) for r in rows]
    plain = run(os.path.join(EXAMPLES, "transcribe.py"), "--model_config", TINY, "--load_dir", exp / "checkpoints",
                *files)
    lines = plain.stdout.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == [r["text"] for r in rows]
    out = tmp_path / "hyp.json"
    run(os.path.join(EXAMPLES, "transcribe.py"), "--model_config", TINY, "--load_dir", exp / "checkpoints",
        "--manifest", TRAIN, "--output_format", "manifest", "--output", out, "--offsets")
    records = [json.loads(line) for line in open(out)]
    assert len(records) == 30
    for record in records:
        words = record["words"]
        assert [w["word"] for w in words] == record["pred_text"].split()
        times = [t for w in words for t in (w["start"], w["end"])]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= record["duration"] + 1e-6
    console = shutil.which("nemo-transcribe", path=os.path.dirname(PYTHON))
    if console:  # installed by pip install -e .
        as_json = subprocess.run([console, "--model_config", TINY, "--load_dir", str(exp / "checkpoints"),
                                  "--output_format", "json", files[0]], capture_output=True, text=True, timeout=300)
        assert as_json.returncode == 0 and json.loads(as_json.stdout)[0]["pred_text"] == rows[0]["text"]


@pytest.mark.slow
def test_tutorial_script_runs_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = nemo_core.NeuralModuleFactory.train

    def few_steps(self, tensors_to_optimize, callbacks=None, optimizer="novograd", optimization_params=None, **kw):
        assert optimization_params == {"num_epochs": 50, "lr": 0.02, "weight_decay": 1e-4}
        return original(self, tensors_to_optimize, callbacks=callbacks, optimizer=optimizer,
                        optimization_params=dict(optimization_params, max_steps=2), **kw)

    monkeypatch.setattr(nemo_core.NeuralModuleFactory, "train", few_steps)
    namespace = runpy.run_path(os.path.join(EXAMPLES, "tutorial_jasper12x1SEP.py"), run_name="__main__")
    assert namespace["eval_callback"].history  # the DEV-CLEAN evaluation ran
    assert os.path.isdir(tmp_path / "jasper12x1SEP")
    assert any(name.startswith("JasperEncoder-STEP-2") for name in os.listdir(tmp_path))
