import os
import subprocess

import pytest
import torch

import nemo_core
from nemo_core import CheckpointCallback, CheckpointError, NeuralModuleFactory
from nemo_core.checkpointing import checkpoint_names, find_sets, save_atomic
from nemo_core.tutorials import MSELoss, RealFunctionDataLayer, TaylorNet

from conftest import PYTHON, SCRIPTS, subprocess_env


def read_losses(path):
    with open(path) as handle:
        return dict(line.split() for line in handle)


def run_script(*args):
    cmd = [PYTHON, os.path.join(SCRIPTS, "train_resumable.py"), *map(str, args)]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_killed_run_resumes_with_identical_losses(tmp_path):
    full = tmp_path / "full"
    run = run_script("--ckpt_dir", full, "--losses", tmp_path / "full.txt", "--max_steps", 30)
    assert run.returncode == 0, run.stderr
    reference = read_losses(tmp_path / "full.txt")
    assert len(reference) == 30

    resumed = tmp_path / "resumed"
    killed = run_script("--ckpt_dir", resumed, "--losses", tmp_path / "part.txt", "--max_steps", 30,
                        "--kill_at_step", 17)
    assert killed.returncode == -9  # SIGKILL: no clean-up ran
    files = sorted(os.listdir(resumed))
    # two modules of one class get distinct names; only complete sets; rotation kept 2 sets (10 and 15)
    assert files == ["MLP-STEP-10.pt", "MLP-STEP-15.pt", "MLP_1-STEP-10.pt",
                     "MLP_1-STEP-15.pt", "trainer-STEP-10.pt", "trainer-STEP-15.pt"]
    # a set cut short by a crash (module file, no trainer file) must be ignored
    torch.save({}, resumed / "MLP-STEP-20.pt")

    again = run_script("--ckpt_dir", resumed, "--losses", tmp_path / "rest.txt", "--max_steps", 30)
    assert again.returncode == 0, again.stderr
    assert "Resumed from" in again.stderr and "step 15 (epoch 1)" in again.stderr
    rest = read_losses(tmp_path / "rest.txt")
    assert sorted(map(int, rest)) == list(range(16, 31))
    # 15 steps (across an epoch boundary) reproduce the uninterrupted run exactly
    assert {k: reference[k] for k in rest} == rest


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "Model-STEP-1.pt"

    def exploding_save(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"w": torch.ones(2)}, str(target))
    assert os.listdir(tmp_path) == []


def _train_once(folder, **callback_kwargs):
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
    dl = RealFunctionDataLayer(n=32, batch_size=8)
    fx = TaylorNet(dim=3)
    x, y = dl()
    loss = MSELoss()(predictions=fx(x=x), target=y)
    cb = CheckpointCallback(folder=str(folder), **callback_kwargs)
    result = nf.train([loss], callbacks=[cb], optimizer="sgd", optimization_params={"max_steps": 4, "lr": 1e-3})
    return fx, result


def test_corrupt_checkpoint_named_in_error_or_skipped(tmp_path, capsys):
    _train_once(tmp_path, step_freq=2)
    assert [s.step for s in find_sets(str(tmp_path), ["TaylorNet"])] == [2, 4]
    (tmp_path / "TaylorNet-STEP-4.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="TaylorNet-STEP-4.pt"):
        _train_once(tmp_path, step_freq=2, force_load=True, checkpoints_to_keep=0)
    capsys.readouterr()
    fx, result = _train_once(tmp_path, step_freq=100, force_load=False, checkpoints_to_keep=0)
    err = capsys.readouterr().err
    # the corrupt step-4 set is skipped (named), the intact step-2 set is used
    assert "Cannot resume from" in err and "TaylorNet-STEP-4.pt" in err
    assert "at step 2" in err and result["step"] == 4
    (tmp_path / "TaylorNet-STEP-2.pt").write_bytes(b"garbage")
    (tmp_path / "TaylorNet-STEP-4.pt").write_bytes(b"garbage")
    fx, result = _train_once(tmp_path, step_freq=100, force_load=False, checkpoints_to_keep=0)
    assert "training starts from scratch" in capsys.readouterr().err


def test_mismatched_checkpoint_lists_keys(tmp_path):
    torch.save({"fc1.weight": torch.zeros(1, 7), "fc1.bias": torch.zeros(1)}, tmp_path / "TaylorNet-STEP-3.pt")
    torch.save({"step": 3}, tmp_path / "trainer-STEP-3.pt")
    with pytest.raises(Exception, match=r"TaylorNet-STEP-3.pt.*\n.*mis-shaped key fc1.weight"):
        _train_once(tmp_path, force_load=True)


def test_force_load_requires_checkpoint_and_resume_continues(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        _train_once(tmp_path / "missing", force_load=True)
    fx, result = _train_once(tmp_path, step_freq=4)
    assert result["step"] == 4
    fx2, result2 = _train_once(tmp_path, step_freq=4)  # nothing left to do: resumes at max_steps
    assert result2["step"] == 4 and torch.equal(fx.fc1.weight, fx2.fc1.weight)


def test_checkpoint_names_are_stable_and_distinct():
    a, b, c = TaylorNet(dim=2), TaylorNet(dim=2), TaylorNet(dim=2, name="head")
    names = checkpoint_names([c, b, a])
    assert names[a] == "TaylorNet" and names[b] == "TaylorNet_1" and names[c] == "head"
