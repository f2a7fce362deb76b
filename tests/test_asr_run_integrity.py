"""examples/asr/jasper.py as a user runs it, with the faults that used to ruin
or lose a run: bad utterances, a missing --load_dir, SIGTERM, a checkpoint
save cut short before inference."""
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from nemo_core import checkpointing

from conftest import PYTHON, REPO, subprocess_env

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
TINY = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
JASPER = os.path.join(REPO, "examples", "asr", "jasper.py")
INFER = os.path.join(REPO, "examples", "asr", "jasper_infer.py")
MODULES = ["JasperEncoder", "JasperDecoderForCTC"]


def an4_rows():
    with open(os.path.join(AN4, "train_manifest.json")) as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows:
        row["audio_filepath"] = os.path.join(AN4, row["audio_filepath"])
    return rows


def write_manifest(path, rows):
    with open(path, "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    return path


@pytest.fixture(scope="module")
def bad_manifest(tmp_path_factory):
    """The 30 AN4 utterances plus one of each kind of bad utterance."""
    folder = tmp_path_factory.mktemp("bad_data")
    rows = an4_rows()
    audio, rate = sf.read(rows[0]["audio_filepath"], dtype="float32")
    sf.write(folder / "short_long_text.wav", audio[: int(0.15 * rate)], rate)
    nan = audio.copy()
    nan[100] = np.nan
    sf.write(folder / "nan.wav", nan, rate, subtype="FLOAT")
    sf.write(folder / "declared_long.wav", audio[:160], rate)  # 10 ms, declared as 1 s
    (folder / "garbage.wav").write_bytes(b"RIFF....not a wave file at all")
    bad = [
        {"audio_filepath": str(folder / "short_long_text.wav"), "duration": 0.15, "text": "yes " * 15},
        {"audio_filepath": str(folder / "nan.wav"), "duration": 1.0, "text": "stop"},
        {"audio_filepath": str(folder / "declared_long.wav"), "duration": 1.0, "text": "go"},
        {"audio_filepath": str(folder / "garbage.wav"), "duration": 1.0, "text": "no"},
    ]
    return write_manifest(folder / "train_with_bad.json", rows[:13] + bad + rows[13:])


def jasper(*args, timeout=600):
    cmd = [PYTHON, JASPER, *map(str, args)]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def tiny_args(train, work, exp, *extra):
    return ["--model_config", TINY, "--train_dataset", train, "--batch_size", 10, "--lr", 0.02, "--beta1", 0.8,
            "--random_seed", 0, "--work_dir", work, "--exp_name", exp, "--log_freq", 1, *extra]


def checkpoint_weights_finite(folder):
    sets = checkpointing.find_sets(str(folder), MODULES)
    assert sets, f"no complete set in {folder}"
    for ckpt_set in sets:
        for path in ckpt_set.files.values():
            for key, value in torch.load(path).items():
                assert torch.isfinite(value).all(), f"{path}: {key} is not finite"
    return sets


@pytest.mark.slow
def test_bad_utterances_are_listed_and_training_stays_finite(bad_manifest, tmp_path):
    result = jasper(*tiny_args(bad_manifest, tmp_path, "bad", "--max_steps", 12, "--checkpoint_save_freq", 6))
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / "bad"
    with open(exp / "dropped_utterances.jsonl") as handle:
        report = {os.path.basename(r["audio_filepath"]): r for r in map(json.loads, handle)}
    assert report["garbage.wav"]["kind"] == "unreadable"
    assert report["short_long_text.wav"]["kind"] == "ctc_infeasible"
    assert report["nan.wav"]["kind"] == "non_finite_samples"  # found when the file was loaded
    assert "declared_long.wav" in report  # its true duration (10 ms) is used: listed, then dropped as too short
    assert all(r["source"].startswith(str(bad_manifest)) for r in report.values())
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in result.stderr.splitlines() if "Step " in line
              and "loss " in line]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert [s.step for s in checkpoint_weights_finite(exp / "checkpoints")] == [6, 12]


@pytest.mark.slow
def test_stop_policy_and_missing_load_dir_are_one_line_errors(bad_manifest, tmp_path):
    stopped = jasper(*tiny_args(bad_manifest, tmp_path, "strict", "--max_steps", 2, "--bad_utterances", "stop"))
    assert stopped.returncode == 1
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("jasper.py: error:") and "garbage.wav" in last and "Traceback" not in stopped.stderr
    missing = jasper(*tiny_args(os.path.join(AN4, "train_manifest.json"), tmp_path, "typo", "--max_steps", 2,
                                "--load_dir", tmp_path / "no_such_folder"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "no_such_folder" in missing.stderr and "does not exist" in missing.stderr


@pytest.mark.slow
def test_sigterm_saves_and_the_same_command_resumes(tmp_path):
    args = tiny_args(os.path.join(AN4, "train_manifest.json"), tmp_path, "preempted", "--max_steps", 40,
                     "--checkpoint_save_freq", 1000)
    proc = subprocess.Popen([PYTHON, JASPER, *map(str, args)], env=subprocess_env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # wait for the third step, as a scheduler would strike at any time
        seen.append(line)
        if "Step 3:" in line or time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    status = proc.wait(timeout=120)
    assert status == 143, "".join(seen) + rest
    assert "Training stopped by SIGTERM after step" in rest
    sets = checkpoint_weights_finite(tmp_path / "preempted" / "checkpoints")
    stopped_at = sets[-1].step
    assert 3 <= stopped_at < 40
    again = jasper(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at step {stopped_at}" in again.stderr and "Resumed from" in again.stderr
    results = json.loads((tmp_path / "preempted" / "results.json").read_text())
    assert results["train"]["step"] == 40


@pytest.mark.slow
def test_inference_never_mixes_steps_of_an_interrupted_save(tmp_path):
    exp = tmp_path / "run"
    trained = jasper(*tiny_args(os.path.join(AN4, "train_manifest.json"), tmp_path, "run", "--max_steps", 6,
                                "--checkpoint_save_freq", 3))
    assert trained.returncode == 0, trained.stderr[-3000:]
    folder = exp / "checkpoints"
    # a save cut short at step 9: the encoder file was written, the decoder and trainer files were not
    encoder = torch.load(folder / "JasperEncoder-STEP-6.pt")
    torch.save({k: torch.zeros_like(v) for k, v in encoder.items()}, folder / "JasperEncoder-STEP-9.pt")
    test = os.path.join(AN4, "test_manifest.json")
    for backend in ("framework", "pytorch"):
        cmd = [PYTHON, INFER, "--model_config", TINY, "--eval_datasets", test, "--load_dir", folder,
               "--backend", backend, "--output", tmp_path / f"{backend}.json"]
        result = subprocess.run(list(map(str, cmd)), env=subprocess_env(), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "JasperEncoder-STEP-6.pt" in result.stderr and "JasperDecoderForCTC-STEP-6.pt" in result.stderr
        assert "STEP-9" not in result.stderr
    framework = json.loads((tmp_path / "framework.json").read_text())
    pytorch = json.loads((tmp_path / "pytorch.json").read_text())
    assert framework["test_manifest"]["greedy_wer"] == pytorch["test_manifest"]["greedy_wer"]
    shutil.rmtree(folder)


def _train_with_augmentation(folder, max_steps):
    import nemo_core
    import nemo_asr
    from nemo_asr.ctc_graph import ctc_graph
    from nemo_asr.model_config import modules_from_config
    from ruamel.yaml import YAML

    with open(TINY) as handle:
        cfg = YAML(typ="safe").load(handle)
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=os.path.join(AN4, "train_manifest.json"),
                                          labels=cfg["labels"], batch_size=10)
    pre, enc, dec = modules_from_config(cfg)
    augment = nemo_asr.SpectrogramAugmentation(freq_masks=2, time_masks=2, freq_width=8, time_width=8)
    loss = ctc_graph(layer, pre, enc, dec, loss=nemo_asr.CTCLossNM(num_classes=len(cfg["labels"])),
                     augment=augment).loss
    losses = {}
    record = type("Record", (nemo_core.ActionCallback,), {
        "on_step_end": lambda self, state: losses.__setitem__(state.step, repr(state.loss.item()))})()
    nf.train([loss], callbacks=[nemo_core.CheckpointCallback(folder=str(folder), step_freq=3), record],
             optimizer="novograd", optimization_params={"max_steps": max_steps, "lr": 0.01})
    return losses


@pytest.mark.slow
def test_resume_continues_spec_augment_masks_exactly(tmp_path):
    reference = _train_with_augmentation(tmp_path / "full", 6)
    _train_with_augmentation(tmp_path / "run", 3)
    resumed = _train_with_augmentation(tmp_path / "run", 6)  # a fresh process would build the same objects
    assert sorted(resumed) == [4, 5, 6]
    assert {k: reference[k] for k in resumed} == resumed
