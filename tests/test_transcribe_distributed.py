"""Bulk transcription across processes: ``nemo-transcribe --manifest`` under torchrun (two gloo processes)."""
import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO, free_port, subprocess_env

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
CONFIG = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
MODEL = os.path.join(REPO, "tests", "data", "serve_model")


@pytest.fixture
def manifest(tmp_path):
    """11 lines: 9 AN4 utterances (odd count: unequal shards), a missing file and a header-only file."""
    rows = [json.loads(line) for line in open(os.path.join(AN4, "test_manifest.json"), encoding="utf-8")][:9]
    for row in rows:
        row["audio_filepath"] = os.path.join(AN4, row["audio_filepath"])
    header_only = tmp_path / "empty.wav"
    import numpy as np
    import soundfile as sf

    sf.write(header_only, np.zeros(0, dtype=np.float32), 16000)
    rows.insert(3, {"audio_filepath": str(tmp_path / "missing.wav"), "text": "gone"})
    rows.insert(7, {"audio_filepath": str(header_only)})
    path = tmp_path / "bulk.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def transcribe(prefix, manifest, output, backend):
    command = [PYTHON, *prefix, "-m", "nemo_asr.transcribe", "--model_config", CONFIG, "--load_dir", MODEL,
               "--manifest", str(manifest), "--output_format", "manifest", "--output", str(output),
               "--backend", backend, "--batch_size", "2"]
    run = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]  # two inputs failed (and were reported), the rest were written
    errors = [line for line in run.stderr.splitlines() if line.startswith("nemo-transcribe: error:")]
    assert len(errors) == 2, run.stderr[-3000:]  # each failed file once, not once per rank
    return [json.loads(line) for line in output.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["framework", "pytorch"])
def test_two_processes_write_one_merged_output_in_manifest_order(tmp_path, manifest, backend):
    single = transcribe([], manifest, tmp_path / "one.json", backend)
    torchrun = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--rdzv_backend=c10d",
                f"--rdzv_endpoint=127.0.0.1:{free_port()}", "--rdzv_id=bulk"]
    sharded = transcribe(torchrun, manifest, tmp_path / "two.json", backend)
    expected = [json.loads(line)["audio_filepath"] for line in manifest.read_text().splitlines()]
    assert [r["audio_filepath"] for r in sharded] == expected  # nothing lost, duplicated or reordered
    assert sharded == single
    assert [("error" in r) for r in sharded] == [i in (3, 7) for i in range(11)]
    assert all(r["pred_text"].strip() for r in sharded if "error" not in r)


def test_unpadded_shards_are_contiguous_blocks_in_rank_order():
    """Inference shards: each sample once, rank r holds the r-th block (so rank-order gathering = data order)."""
    from nemo_core.data_loading import ShardedSampler

    for n in range(0, 11):
        for world in range(1, 6):
            shards = [list(ShardedSampler(list(range(n)), world, rank, shuffle=False, pad=False)) for rank in range(world)]
            assert [i for shard in shards for i in shard] == list(range(n)), (n, world)
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
            assert [len(ShardedSampler(list(range(n)), world, r, shuffle=False, pad=False)) for r in range(world)] \
                == list(map(len, shards))
