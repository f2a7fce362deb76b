import argparse
import json
import os
import subprocess

import pytest

import nemo_core

from conftest import PYTHON, SCRIPTS, free_port, subprocess_env

SCRIPT = os.path.join(SCRIPTS, "ddp_taylor.py")


def single_process(tmp_path, batch_size, batches_per_step=1):
    out = tmp_path / f"single_{batch_size}_{batches_per_step}.json"
    cmd = [PYTHON, SCRIPT, "--out", str(out), "--batch_size", str(batch_size),
           "--batches_per_step", str(batches_per_step)]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text())


def two_processes(tmp_path, launcher, batch_size):
    out = tmp_path / f"ddp_{launcher}.json"
    if launcher == "torchrun":
        # c10d rendezvous, as a multi-node job would use it
        prefix = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                  "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "--rdzv_id=test"]
    else:
        prefix = ["-m", "torch.distributed.launch", "--nproc_per_node=2", f"--master_port={free_port()}"]
    cmd = [PYTHON, *prefix, SCRIPT, "--out", str(out), "--batch_size", str(batch_size)]
    if launcher == "launch":  # also cover dividing gradients before the all-reduce
        cmd.append("--gradient_predivide")
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def assert_close(a, b, tol=1e-6):
    assert len(a) == len(b)
    assert max(abs(x - y) for x, y in zip(a, b)) <= tol, (a, b)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "launch"])
def test_two_gloo_processes_match_one_process_with_double_batch(tmp_path, launcher):
    ddp = two_processes(tmp_path, launcher, batch_size=4)
    single = single_process(tmp_path, batch_size=8)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert_close(ddp["weight"], single["weight"])
    assert_close(ddp["bias"], single["bias"])
    # evaluation gathered from both ranks covers the 11 eval samples exactly once
    assert ddp["eval"]["count"] == 11
    assert ddp["eval"]["x"] == single["eval"]["x"]


@pytest.mark.slow
def test_accumulation_matches_bigger_batch_single_process(tmp_path):
    accumulated = single_process(tmp_path, batch_size=4, batches_per_step=2)
    big = single_process(tmp_path, batch_size=8)
    assert_close(accumulated["weight"], big["weight"])


def test_both_local_rank_spellings_are_accepted():
    parser = nemo_core.add_distributed_args(argparse.ArgumentParser())
    assert parser.parse_args(["--local-rank=1"]).local_rank == 1
    assert parser.parse_args(["--local_rank", "3"]).local_rank == 3
    assert parser.parse_args([]).local_rank is None
