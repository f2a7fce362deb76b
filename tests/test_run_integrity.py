"""Nothing may silently ruin or lose a training run (README "Reliability").

Non-finite steps are skipped without a trace, checkpoints never hold
non-finite weights, failures and signals cost at most the current step,
checkpoint discovery only ever uses complete sets, and resuming applies this
run's settings or refuses clearly.
"""
import copy
import json
import os
import shutil
import subprocess

import pytest
import torch

import nemo_core
from nemo_core import CheckpointCallback, CheckpointError, NeuralModuleFactory, NonFiniteTrainingError, ResumeError
from nemo_core import checkpointing
from nemo_core.tutorials import MLP, MSELoss, RealFunctionDataLayer, TaylorNet

from conftest import PYTHON, SCRIPTS, subprocess_env


class PointsLayer(RealFunctionDataLayer):
    """sin(x) points; ``poison`` indices hold NaN; reading ``fail_at`` raises once per ``failures`` list."""

    def __init__(self, n, batch_size, poison=(), shuffle=False, fail_at=None):
        super().__init__(n=n, batch_size=batch_size, shuffle=shuffle)
        for i in poison:
            self.dataset.x[i] = float("nan")
        if fail_at is not None:
            self._dataset = _FailingOnce(self.dataset, fail_at)

    def describe_samples(self, indices):
        return [f"point-{i}" for i in indices]


class _FailingOnce(torch.utils.data.Dataset):
    """Raises on the ``nth`` read of sample ``index`` (``fail_at=index`` or ``(index, nth)``), once."""

    def __init__(self, inner, fail_at):
        self.inner = inner
        self.index, self.nth = fail_at if isinstance(fail_at, tuple) else (fail_at, 1)
        self.reads = 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i == self.index:
            self.reads += 1
            if self.reads == self.nth:
                raise OSError(f"cannot read sample {i} (disk went away)")
        return self.inner[i]


def build(poison=(), n=64, batch_size=8, fail_at=None, seed=0):
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=seed)
    dl = PointsLayer(n=n, batch_size=batch_size, poison=poison, fail_at=fail_at)
    net = MLP(batch_norm=True)
    x, y = dl()
    return nf, dl, net, MSELoss()(predictions=net(x=x), target=y)


class Snapshots(nemo_core.ActionCallback):
    """Weights, optimiser state and BatchNorm buffers before and after chosen steps."""

    def __init__(self, net, steps):
        self.net, self.steps, self.before, self.after = net, set(steps), {}, {}

    def _take(self, state):
        return copy.deepcopy({"model": self.net.state_dict(), "optimizer": state.optimizer.state_dict()["state"]})

    def on_step_start(self, state):
        if state.step in self.steps:
            self.before[state.step] = self._take(state)

    def on_step_end(self, state):
        if state.step - 1 in self.steps:
            self.after[state.step - 1] = self._take(state)


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def all_finite(module):
    return all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point())


def test_non_finite_batch_is_skipped_without_trace(tmp_path, capsys):
    nf, dl, net, loss = build(poison=[20])  # sample 20 is in batch 2 of every epoch (no shuffling)
    snaps = Snapshots(net, steps=[1, 2, 10])
    cb = CheckpointCallback(folder=str(tmp_path), step_freq=4)
    result = nf.train([loss], callbacks=[snaps, cb], optimizer="novograd",
                      optimization_params={"max_steps": 16, "lr": 0.05})
    log = capsys.readouterr().err
    # the poisoned batch came twice (steps 2 and 10): both skipped, nothing else
    assert result["step"] == 16 and result["skipped_steps"] == 2
    for step in (2, 10):
        assert same(snaps.before[step], snaps.after[step]), f"step {step} changed the model or optimizer"
    assert not same(snaps.before[1], snaps.after[1])  # a normal step does change them
    assert "Step 3 skipped: loss is nan" in log and "point-20" in log  # step numbers in the log count from 1
    assert all_finite(net)
    for ckpt_set in checkpointing.find_sets(str(tmp_path), ["MLP"]):
        assert all(torch.isfinite(v).all() for v in torch.load(ckpt_set.files["MLP"]).values()
                   if v.is_floating_point())


def test_consecutive_skips_stop_the_run_with_the_last_good_weights(tmp_path):
    nf, dl, net, loss = build(poison=range(24, 64))  # from step 3 on every batch is bad
    snaps = Snapshots(net, steps=[2])
    cb = CheckpointCallback(folder=str(tmp_path), step_freq=100)
    with pytest.raises(NonFiniteTrainingError, match="3 steps in a row"):
        nf.train([loss], callbacks=[snaps, cb], optimizer="novograd", max_consecutive_skips=3,
                 optimization_params={"max_steps": 50, "lr": 0.05})
    sets = checkpointing.find_sets(str(tmp_path), ["MLP"])
    assert [s.step for s in sets] == [6]  # written when the run stopped: steps 3, 4, 5 were skipped
    saved = torch.load(sets[0].files["MLP"])
    assert same(saved, snaps.after[2]["model"])  # exactly the weights after the last good step


def test_stop_on_nan_loss_writes_no_ruined_set(tmp_path):
    nf, dl, net, loss = build(poison=[40])
    snaps = Snapshots(net, steps=[4])
    cb = CheckpointCallback(folder=str(tmp_path), step_freq=100)
    with pytest.raises(NonFiniteTrainingError, match="stop_on_nan_loss"):
        nf.train([loss], callbacks=[snaps, cb], optimizer="sgd", stop_on_nan_loss=True,
                 optimization_params={"max_steps": 50, "lr": 0.05})
    (ckpt_set,) = checkpointing.find_sets(str(tmp_path), ["MLP"])
    assert same(torch.load(ckpt_set.files["MLP"]), snaps.after[4]["model"])


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    net = MLP(batch_norm=True)
    with torch.no_grad():
        net.net[0].weight[0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=r"non-finite values in net\.0\.weight"):
        checkpointing.save_checkpoint(str(tmp_path), 3, {net: "MLP"}, {"step": 3})
    assert os.listdir(tmp_path) == []


class FailingEval(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise OSError("dev/unreadable.wav: cannot decode")


def test_final_checkpoint_is_written_before_the_final_evaluation(tmp_path):
    nf, dl, net, loss = build()
    bad = PointsLayer(n=4, batch_size=2)
    bad._dataset = FailingEval()
    xe, ye = bad()
    evaluator = nemo_core.EvaluatorCallback([MSELoss()(predictions=net(x=xe), target=ye)],
                                            lambda *a: None, lambda *a: {})
    cb = CheckpointCallback(folder=str(tmp_path), step_freq=100)
    with pytest.raises(OSError, match="cannot decode"):  # listed before the checkpoint callback on purpose
        nf.train([loss], callbacks=[evaluator, cb], optimizer="sgd", optimization_params={"max_steps": 5, "lr": 0.1})
    assert [s.step for s in checkpointing.find_sets(str(tmp_path), ["MLP"])] == [5]


def _train_to(folder, max_steps=12, fail_at=None, lr=0.05, optimizer="novograd", weight_decay=0.001, n=64,
              batches_per_step=1, step_freq=100, **cb_kwargs):
    nf, dl, net, loss = build(fail_at=fail_at, n=n)
    cb = CheckpointCallback(folder=str(folder), step_freq=step_freq, **cb_kwargs)
    groups = []
    grab = type("Grab", (nemo_core.ActionCallback,), {
        "on_step_start": lambda self, state: groups.append(dict(state.optimizer.param_groups[0], params=None))})()
    result = nf.train([loss], callbacks=[cb, grab], optimizer=optimizer, batches_per_step=batches_per_step,
                      optimization_params={"max_steps": max_steps, "lr": lr, "weight_decay": weight_decay})
    return net, result, groups


def test_crash_costs_at_most_the_current_step_and_resume_is_exact(tmp_path):
    reference, _, _ = _train_to(tmp_path / "reference")
    with pytest.raises(OSError, match="disk went away"):
        _train_to(tmp_path / "run", fail_at=42)  # sample 42 is read in step 5 (batches of 8)
    assert [s.step for s in checkpointing.find_sets(str(tmp_path / "run"), ["MLP"])] == [5]
    resumed, result, _ = _train_to(tmp_path / "run")
    assert result["step"] == 12
    assert same(resumed.state_dict(), reference.state_dict())  # bit-identical to the run that never failed


def test_crash_inside_a_step_open_across_an_epoch_end_resumes_exactly(tmp_path):
    # 5 batches per epoch, 2 per step: step 2 takes the last batch of epoch 0 and the first of epoch 1
    reference, _, _ = _train_to(tmp_path / "reference", max_steps=5, n=40, batches_per_step=2)
    with pytest.raises(OSError, match="disk went away"):
        _train_to(tmp_path / "run", max_steps=5, n=40, batches_per_step=2, fail_at=(0, 2))  # epoch 1, batch 0
    assert [s.step for s in checkpointing.find_sets(str(tmp_path / "run"), ["MLP"])] == [2]
    resumed, result, _ = _train_to(tmp_path / "run", max_steps=5, n=40, batches_per_step=2)
    assert result["step"] == 5 and same(resumed.state_dict(), reference.state_dict())


def test_resume_failing_half_way_stops_instead_of_mixing_sets(tmp_path):
    _train_to(tmp_path, max_steps=4, step_freq=2)
    for step in (2, 4):  # every set's RNG state is damaged: applying it fails after the weights went in
        path = tmp_path / f"trainer-STEP-{step}.pt"
        trainer = torch.load(path, weights_only=True)
        trainer["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
        torch.save(trainer, path)
    with pytest.raises(ResumeError, match="step 4 failed half-way"):
        _train_to(tmp_path, max_steps=6)


def test_the_same_command_after_a_stop_continues_instead_of_restarting(tmp_path, capsys):
    weights = tmp_path / "pretrained"
    weights.mkdir()
    MLP(batch_norm=True).save_to(str(weights / "MLP-STEP-300.pt"))
    _train_to(tmp_path / "run", max_steps=6, step_freq=3, load_from_folder=str(weights))
    capsys.readouterr()
    _, result, groups = _train_to(tmp_path / "run", max_steps=8, step_freq=3, load_from_folder=str(weights))
    log = capsys.readouterr().err
    assert "holds this run's own checkpoints" in log and "at step 6" in log
    assert result["step"] == 8 and len(groups) == 2


def test_a_skip_decided_for_another_rank_counts_as_that_ranks_loss(tmp_path):
    from nemo_core.precision import Precision

    net = MLP()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x=torch.ones(4, 1)).sum().backward()
    before = copy.deepcopy(net.state_dict())
    precision = Precision(nemo_core.Optimization.mxprO0, "cpu")
    outcome = precision.step(opt, list(net.parameters()), True,
                             agree=lambda local: local | torch.tensor([True, False]))  # rank 1's loss was NaN
    assert not outcome.taken and not outcome.loss_finite and outcome.reason == "another rank"
    assert same(before, net.state_dict())


def test_resume_applies_new_settings_and_refuses_another_optimizer(tmp_path, capsys):
    _train_to(tmp_path, max_steps=4, lr=0.01, weight_decay=0.001)
    capsys.readouterr()
    _, result, groups = _train_to(tmp_path, max_steps=6, lr=0.02, weight_decay=0.0)
    log = capsys.readouterr().err
    assert result["step"] == 6 and len(groups) == 2  # steps 4 and 5 only
    assert groups[0]["initial_lr"] == 0.02 and groups[0]["weight_decay"] == 0.0
    assert "lr 0.01 -> 0.02" in log and "weight_decay 0.001 -> 0" in log
    with pytest.raises(ResumeError, match="trained with Novograd, but this run uses SGD"):
        _train_to(tmp_path, max_steps=8, optimizer="sgd")
    assert [s.step for s in checkpointing.find_sets(str(tmp_path), ["MLP"])] == [4, 6]  # nothing written


def test_load_dir_must_exist_and_weights_only_folder_initialises(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="does not exist"):
        _train_to(tmp_path / "run", load_from_folder=str(tmp_path / "typo"))
    weights_only = tmp_path / "weights"
    source = MLP(batch_norm=True)
    weights_only.mkdir()
    source.save_to(str(weights_only / "MLP-STEP-300.pt"))
    capsys.readouterr()
    net, result, _ = _train_to(tmp_path / "run", max_steps=3, lr=0.0, load_from_folder=str(weights_only))
    log = capsys.readouterr().err
    assert "Initialised the weights from" in log and "not resuming" in log
    assert result["step"] == 3  # started at step 0
    assert same({k: v for k, v in net.state_dict().items() if "running" not in k and "batches" not in k},
                {k: v for k, v in source.state_dict().items() if "running" not in k and "batches" not in k})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="No complete checkpoint set for MLP"):
        _train_to(tmp_path / "run2", load_from_folder=str(empty))


def test_discovery_uses_complete_sets_only(tmp_path):
    enc, dec = TaylorNet(dim=3, name="enc"), TaylorNet(dim=3, name="dec")
    old = {enc: enc.fc1.weight.detach().clone(), dec: dec.fc1.weight.detach().clone()}
    checkpointing.save_checkpoint(str(tmp_path), 1000, {enc: "enc", dec: "dec"}, {"step": 1000})
    with torch.no_grad():
        enc.fc1.weight.add_(1.0)
        dec.fc1.weight.add_(1.0)
    enc.save_to(str(tmp_path / "enc-STEP-2444.pt"))  # a save cut short: encoder written, the rest not
    dec.save_to(str(tmp_path / "dec-STEP-3000.pt"))  # ... and a module file without its trainer file
    enc.save_to(str(tmp_path / "enc-STEP-3000.pt"))
    fresh_enc, fresh_dec = TaylorNet(dim=3, name="enc"), TaylorNet(dim=3, name="dec")
    loaded = checkpointing.restore_modules([fresh_enc, fresh_dec], str(tmp_path))
    assert loaded.step == 1000
    assert torch.equal(fresh_enc.fc1.weight, old[enc]) and torch.equal(fresh_dec.fc1.weight, old[dec])
    # the infer action uses the same discovery
    nf = NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    dl = RealFunctionDataLayer(n=4, batch_size=4)
    other_enc, other_dec = TaylorNet(dim=3, name="enc"), TaylorNet(dim=3, name="dec")
    x, _ = dl()
    nf.infer([other_dec(x=other_enc(x=x))], checkpoint_dir=str(tmp_path))
    assert torch.equal(other_enc.fc1.weight, old[enc]) and torch.equal(other_dec.fc1.weight, old[dec])
    # a folder without trainer files (an NGC download): the newest step where every module has a file
    ngc = tmp_path / "ngc"
    ngc.mkdir()
    for step in (5, 7):
        enc.save_to(str(ngc / f"model-enc-STEP-{step}.pt"))
    dec.save_to(str(ngc / "model-dec-STEP-5.pt"))
    assert checkpointing.restore_modules([fresh_enc, fresh_dec], str(ngc)).step == 5


def run_script(*args, timeout=300):
    cmd = [PYTHON, os.path.join(SCRIPTS, "train_resumable.py"), *map(str, args)]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def read_losses(path):
    with open(path) as handle:
        return dict(line.split() for line in handle)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name,status", [("TERM", 143), ("INT", 130)])
def test_signal_finishes_the_step_saves_and_resumes_exactly(tmp_path, signal_name, status):
    full = run_script("--ckpt_dir", tmp_path / "full", "--losses", tmp_path / "full.txt", "--max_steps", 20)
    assert full.returncode == 0, full.stderr
    reference = read_losses(tmp_path / "full.txt")
    run = tmp_path / "run"
    stopped = run_script("--ckpt_dir", run, "--losses", tmp_path / "part.txt", "--max_steps", 20,
                         "--signal_at_step", 8, "--signal", signal_name)
    assert stopped.returncode == status, stopped.stderr
    assert f"Training stopped by SIG{signal_name} after step 8" in stopped.stderr
    # a complete set at step 8 (not a multiple of --step_freq 5) and nothing half-written
    assert [s.step for s in checkpointing.find_sets(str(run), ["MLP", "MLP_1"])] == [5, 8]
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]
    again = run_script("--ckpt_dir", run, "--losses", tmp_path / "rest.txt", "--max_steps", 20)
    assert again.returncode == 0, again.stderr
    rest = read_losses(tmp_path / "rest.txt")
    assert sorted(map(int, rest)) == list(range(9, 21))
    assert {k: reference[k] for k in rest} == rest


DISK_FULL_SCRIPT = r"""
import json, os, sys, torch, nemo_core
from nemo_core import checkpointing
from nemo_core.tutorials import MLP, MSELoss, RealFunctionDataLayer
folder = sys.argv[1]
nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU, random_seed=0)
dl = RealFunctionDataLayer(n=32, batch_size=8)
net = MLP(hidden=10000, batch_norm=True)  # ~320 KB per set (weights and BatchNorm buffers)
x, y = dl()
loss = MSELoss()(predictions=net(x=x), target=y)
out = {}
try:
    nf.train([loss], callbacks=[nemo_core.CheckpointCallback(folder=folder, step_freq=2, checkpoints_to_keep=0)],
             optimizer="sgd", optimization_params={"max_steps": 6, "lr": 0.01})
except nemo_core.CheckpointError as err:
    out["error"] = str(err)
out["files"] = sorted(os.listdir(folder))
out["sets"] = [s.step for s in checkpointing.find_sets(folder, ["MLP"])]
loaded = checkpointing.read_set(checkpointing.find_sets(folder, ["MLP"])[-1], {MLP(hidden=10000, batch_norm=True): "MLP"})
out["readable"] = loaded.trainer_state["step"]
print(json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_disk_full_names_the_folder_and_keeps_earlier_sets(tmp_path):
    folder = tmp_path / "small_disk"
    folder.mkdir()
    script = tmp_path / "disk_full.py"
    script.write_text(DISK_FULL_SCRIPT)
    # a real, tiny filesystem (500 KiB tmpfs) in a private mount namespace: one set fits, the second does not
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
           f'mount -t tmpfs -o size=500k none "{folder}" && exec "{PYTHON}" "{script}" "{folder}"']
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "mount" in proc.stderr and "error" not in proc.stdout:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "is full" in out["error"] and str(folder) in out["error"]
    assert out["sets"] == [2] and out["readable"] == 2  # the earlier set is intact
    assert out["files"] == ["MLP-STEP-2.pt", "trainer-STEP-2.pt"]  # no temporary or partial files
