"""Two gloo processes under torchrun fail together and agree.

- an exception on one rank ends the whole job quickly (not after the process
  group's 30-minute timeout), non-zero, naming the failure;
- a NaN loss on one rank only makes *both* ranks skip that step, so their
  weights stay bit-identical;
- SIGTERM (to torchrun, or to one rank) stops both ranks after the same step
  with a complete checkpoint set, and a second torchrun resumes from it --
  also when the set takes seconds to write and torchrun signals rank 0 again
  because rank 1 finished first.

Every process is bounded by a timeout and its process group is killed on the
way out. The script is ``tests/scripts/ddp_failures.py``.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch

from nemo_core.checkpointing import find_sets

from conftest import PYTHON, SCRIPTS, free_port, subprocess_env

SCRIPT = os.path.join(SCRIPTS, "ddp_failures.py")
BATCH = 4  # per rank; 64 samples -> 8 steps per epoch


class Job:
    """``torchrun --nproc_per_node=2 ddp_failures.py ...`` in its own session (so it can be killed whole)."""

    def __init__(self, tmp_path, name, *args):
        self.out = tmp_path / name
        self.log_path = tmp_path / f"{name}.log"
        cmd = [PYTHON, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--rdzv_backend=c10d",
               f"--rdzv_endpoint=127.0.0.1:{free_port()}", f"--rdzv_id={name}", SCRIPT,
               "--out", str(self.out), "--batch_size", str(BATCH), *map(str, args)]
        self.started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait(self, timeout=120):
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self.seconds, self.ended_at = time.monotonic() - self.started, time.time()
        self.output = self.log_path.read_text()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def progress(self, rank):
        """[(step, loss repr, unix time)] that ``rank`` completed."""
        path = self.out / f"progress-rank{rank}.txt"
        if not path.exists():
            return []
        return [(int(s), loss, float(t)) for s, loss, t in (line.split() for line in path.read_text().splitlines())]

    def wait_for_step(self, step, timeout=90):
        deadline = time.monotonic() + timeout
        while len(self.progress(0)) < step:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"job did not reach step {step}:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def pid(self, rank):
        return int((self.out / f"pid-rank{rank}").read_text())

    def skipped(self, rank):
        """The step numbers the log of ``rank`` reports as skipped."""
        return [int(s) for s in re.findall(rf"rank {rank}\] WARNING nemo_core: Step (\d+) skipped", self.output)]


@pytest.fixture
def jobs():
    started = []
    yield lambda *args: started.append(Job(*args)) or started[-1]
    for job in started:  # nothing outlives the test, whatever failed
        job.kill()


def test_exception_on_one_rank_ends_the_whole_job_quickly(tmp_path, jobs):
    fail_step = 5
    job = jobs(tmp_path, "fail", "--fail_rank", 1, "--fail_step", fail_step, "--max_steps", 1000,
               "--ckpt_dir", tmp_path / "ckpt", "--step_freq", 1000)
    rc = job.wait(timeout=120)
    assert rc != 0
    assert f"RuntimeError: injected failure on rank 1 at step {fail_step}" in job.output
    assert "Root Cause" in job.output and "rank      : 1" in job.output  # torchrun names the rank that failed
    # the peer saw its partner vanish at the next collective, not after the 1800 s process-group timeout
    assert "Connection closed by peer" in job.output
    (step_1, _, failed_at), (step_0, _, _) = job.progress(1)[-1], job.progress(0)[-1]
    assert step_1 == step_0 == fail_step  # neither rank went past the last common step
    ended_after = job.ended_at - failed_at  # rank 1 raised right after writing its last progress line
    print(f"whole job {job.seconds:.1f} s; ended {ended_after:.2f} s after rank 1 failed")
    assert job.seconds < 60 and ended_after < 30
    # rank 0 still wrote the last step both ranks completed (the train loop saves on any failure)
    assert [s.step for s in find_sets(str(tmp_path / "ckpt"), ["TaylorNet"])] == [fail_step]


@pytest.mark.parametrize("nan_in", ["loss", "data"])
def test_nan_on_one_rank_is_skipped_by_both_and_weights_stay_identical(tmp_path, jobs, nan_in):
    nan_step = 3
    nan_sample = 1 + 2 * nan_step * BATCH  # rank 1's first sample of step 3 (unshuffled, 2 ranks)
    # "loss": only rank 1's loss is NaN, its gradients (and so the all-reduced ones) are finite:
    # rank 0 learns of it only through the guard's all-reduce. "data": NaN gradients reach both through DDP.
    job = jobs(tmp_path, f"nan_{nan_in}", "--nan_sample", nan_sample, "--nan_in", nan_in, "--max_steps", 8)
    assert job.wait(timeout=120) == 0, job.output[-3000:]
    assert job.skipped(0) == job.skipped(1) == [nan_step + 1]  # the log numbers steps from 1
    rank1_reason = re.search(r"rank 1\] WARNING nemo_core: Step \d+ skipped: ([a-z ]+)", job.output).group(1)
    rank0_reason = re.search(r"rank 0\] WARNING nemo_core: Step \d+ skipped: ([a-z ]+)", job.output).group(1)
    assert rank1_reason == "loss is nan"
    assert rank0_reason == ("another process had a non" if nan_in == "loss" else "gradient norm is nan")
    assert f"sample #{nan_sample}" in job.output  # rank 1 names the bad sample
    results = [json.loads((job.out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["skipped_steps"] for r in results] == [1, 1] and [r["step"] for r in results] == [8, 8]
    weights = [torch.load(job.out / f"rank{r}.pt") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name  # bit for bit
        assert torch.isfinite(weights[0][name]).all()


def signal_and_resume(tmp_path, jobs, target, name):
    ckpt = tmp_path / f"ckpt_{name}"
    common = ["--ckpt_dir", ckpt, "--step_freq", 1000]
    job = jobs(tmp_path, name, "--max_steps", 100000, "--step_sleep", 0.05, *common)
    job.wait_for_step(4)
    os.kill(job.proc.pid if target == "torchrun" else job.pid(target), signal.SIGTERM)
    rc = job.wait(timeout=90)
    assert rc != 0
    last = {r: job.progress(r)[-1][0] for r in (0, 1)}
    stopped = last[0]
    print(f"SIGTERM to {target}: torchrun exit {rc} after {job.seconds:.1f} s, both ranks stopped after step {stopped}")
    assert last[1] == stopped >= 4  # both ranks stopped after the same step
    for rank in (0, 1):
        assert f"rank {rank}] ERROR nemo_core: rank {rank}: Training stopped by SIGTERM after step {stopped}" \
            in job.output
    assert "a checkpoint set was written" in job.output
    # one complete set, nothing half-written
    assert sorted(os.listdir(ckpt)) == [f"TaylorNet-STEP-{stopped}.pt", f"trainer-STEP-{stopped}.pt"]
    assert [s.step for s in find_sets(str(ckpt), ["TaylorNet"])] == [stopped]

    again = jobs(tmp_path, f"{name}_resumed", "--max_steps", stopped + 3, *common)
    assert again.wait(timeout=120) == 0, again.output[-3000:]
    assert f"Resumed from {ckpt} at step {stopped}" in again.output
    for rank in (0, 1):
        assert [p[0] for p in again.progress(rank)] == [stopped + 1, stopped + 2, stopped + 3]
    return job


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_ranks_at_one_step_and_resumes(tmp_path, jobs):
    job = signal_and_resume(tmp_path, jobs, "torchrun", "term_torchrun")
    assert "Received 15 death signal, shutting down workers" in job.output  # torchrun passed it on


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_ranks_at_one_step_and_resumes(tmp_path, jobs):
    signal_and_resume(tmp_path, jobs, 1, "term_rank1")


@pytest.mark.slow
def test_sigterm_to_rank_0_with_a_slow_checkpoint_write_still_saves(tmp_path, jobs):
    ckpt = tmp_path / "ckpt"
    job = jobs(tmp_path, "slow_save", "--max_steps", 100000, "--step_sleep", 0.05, "--ckpt_dir", ckpt,
               "--step_freq", 1000, "--slow_save_s", 3)
    job.wait_for_step(4)
    os.kill(job.pid(0), signal.SIGTERM)
    assert job.wait(timeout=90) != 0
    stopped = job.progress(0)[-1][0]
    assert job.progress(1)[-1][0] == stopped
    assert ckpt.is_dir() and [s.step for s in find_sets(str(ckpt), ["TaylorNet"])] == [stopped], job.output[-3000:]
