"""nemo-serve under load and at shutdown: full queue (503), timeouts (504), SIGTERM draining, the CLI."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("uvicorn")

from nemo_asr.serve.app import Settings, create_app  # noqa: E402
from nemo_asr.serve.model import ServingModel  # noqa: E402

from conftest import REPO, free_port, subprocess_env  # noqa: E402
from test_serve import SERVE_MODEL, Server, an4, load_serve_model, post, wav_bytes  # noqa: E402

CONFIG = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")


class SlowModel(ServingModel):
    """The real test model, taking ``delay`` seconds longer per batch (a loaded server)."""

    def __init__(self, model, delay):
        super().__init__(model.runner, model.labels, model.sample_rate, model.frame_samples, model.name)
        self.delay = delay

    def infer_batch(self, waveforms):
        time.sleep(self.delay)
        return super().infer_batch(waveforms)


@pytest.fixture(scope="module")
def slow_model():
    return SlowModel(load_serve_model(), delay=1.0)


def _concurrently(function, count):
    results = [None] * count

    def run(i):
        results[i] = function()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    return results


def test_full_queue_gets_503_with_retry_after(slow_model):
    samples, rate = an4()
    data = wav_bytes(samples, rate)
    settings = Settings(max_batch_size=1, max_queue=1, max_wait_ms=0, request_timeout_s=30)
    with Server(create_app(slow_model, settings, warm_up=False)) as server:
        results = _concurrently(lambda: post(server.url("/v1/transcribe"), data), 4)
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) >= 2 and 503 in statuses, statuses
    for status, body, headers in results:
        if status == 503:
            assert "retry shortly" in body["error"] and headers.get("retry-after") == "1"


def test_request_timeout_gets_504_and_the_server_keeps_serving(slow_model):
    samples, rate = an4()
    data = wav_bytes(samples, rate)
    settings = Settings(max_batch_size=1, max_wait_ms=0, request_timeout_s=0.5)
    with Server(create_app(slow_model, settings, warm_up=False)) as server:
        status, body, _ = post(server.url("/v1/transcribe"), data)
        assert status == 504 and "no result within 0.5 s" in body["error"]
        with urllib.request.urlopen(server.url("/metrics")) as response:
            assert 'status="504"' in response.read().decode()


def _serve(extra=(), env=None):
    port = free_port()
    command = [sys.executable, "-m", "nemo_asr.serve.cli", "--model_config", CONFIG, "--load_dir", SERVE_MODEL,
               "--port", str(port), "--log_level", "info", *extra]
    process = subprocess.Popen(command, cwd=REPO, env=env or subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("nemo-serve did not become ready")


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight_then_exits():
    """Requests waiting in the batcher when SIGTERM arrives are all answered; new connections are refused."""
    process, port = _serve(["--max_wait_ms", "1500", "--max_batch_size", "64"])
    samples, rate = an4()
    data = wav_bytes(np.tile(samples, 8), rate)
    url = f"http://127.0.0.1:{port}/v1/transcribe"
    results = []
    threads = [threading.Thread(target=lambda: results.append(post(url, data))) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.7)  # all four are waiting for their batch
    process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    out, err = process.communicate(timeout=60)
    # uvicorn drains, shuts the app down, then re-raises SIGTERM: the Unix way to say "ended by that signal"
    assert process.returncode == -signal.SIGTERM and "Application shutdown complete" in err, err
    assert [status for status, _, _ in results] == [200] * 4
    assert len({body["text"] for _, body, _ in results}) == 1
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    access = [json.loads(line.split("nemo_asr.serve.access: ", 1)[1]) for line in err.splitlines()
              if "nemo_asr.serve.access: " in line]
    assert [a["status"] for a in access if a["path"] == "/v1/transcribe"] == [200] * 4


def test_cli_help_and_one_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nemo_asr.serve.cli", "--help"], cwd=REPO, env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--max_batch_size" in result.stdout
    empty_keys = tmp_path / "metrics_keys"
    empty_keys.write_text("# nothing yet\n")
    for args, words in [
        (["--model_config", str(tmp_path / "nope.yaml"), "--load_dir", SERVE_MODEL], "does not exist"),
        (["--model_config", CONFIG], "give --load_dir"),
        (["--model_config", CONFIG, "--load_dir", str(tmp_path)], str(tmp_path)),
        (["--model_config", CONFIG, "--load_dir", SERVE_MODEL, "--metrics_key_file", str(empty_keys)],
         "holds no key"),
        (["--model_config", CONFIG, "--load_dir", SERVE_MODEL, "--metrics_key_file", str(tmp_path / "none")],
         f"--metrics_key_file {tmp_path / 'none'}: No such file"),
        (["--model_config", CONFIG, "--load_dir", SERVE_MODEL, "--api_key_file", str(empty_keys)],
         "--api_key_file"),
    ]:
        result = subprocess.run([sys.executable, "-m", "nemo_asr.serve.cli", *args], cwd=REPO,
                                env=subprocess_env(), capture_output=True, text=True, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, result.stderr
        assert lines[-1].startswith("nemo-serve: error: ") and words in lines[-1], lines
        assert "Traceback" not in result.stderr


def test_api_keys_from_file_and_environment(tmp_path, monkeypatch):
    from nemo_asr.serve.cli import api_keys

    keys = tmp_path / "keys"
    keys.write_text("# team keys\nalpha\n\nbeta\n")
    monkeypatch.setenv("NEMO_SERVE_API_KEYS", "gamma, delta")
    assert api_keys(str(keys)) == ["gamma", "delta", "alpha", "beta"]
    result = subprocess.run([sys.executable, "-m", "nemo_asr.serve.cli", "--model_config", CONFIG, "--load_dir",
                             SERVE_MODEL, "--partial_s", "0"], cwd=REPO, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "--partial_s: must be more than 0 seconds" in result.stderr
    from nemo_asr.serve.cli import build_parser

    base = ["--model_config", CONFIG, "--load_dir", SERVE_MODEL]
    assert build_parser().parse_args(base).silence_gate_db == 30.0
    assert build_parser().parse_args(base + ["--silence_gate_db", "0"]).silence_gate_db is None  # off
    result = subprocess.run([sys.executable, "-m", "nemo_asr.serve.cli", *base, "--silence_gate_db", "-3"], cwd=REPO,
                            env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--silence_gate_db: must be 0 (off) or 10 to 120 dB" in result.stderr


def test_batcher_forgets_timed_out_requests_and_answers_everything_on_close():
    """A request that timed out leaves the queue at once; close() answers whatever still waits."""
    import asyncio

    from nemo_asr.serve.batcher import DynamicBatcher, QueueFullError

    release = threading.Event()

    def run_batch(items):
        release.wait(10)
        return items

    async def scenario():
        batcher = DynamicBatcher(run_batch, max_batch_size=1, max_wait_ms=0, max_queue=2)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit("first", 1))
        await asyncio.sleep(0.05)  # the worker is now inside run_batch
        for name in ("a", "b"):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(batcher.submit(name, 1), 0.05)
        assert batcher.depth == 0  # both left the queue although the worker is still busy
        waiting = asyncio.ensure_future(batcher.submit("c", 1))  # room again: not refused
        await asyncio.sleep(0.01)
        release.set()
        assert await busy == "first" and await waiting == "c"
        await batcher.close()
        with pytest.raises(QueueFullError, match="shutting down"):
            await batcher.submit("late", 1)

    asyncio.run(scenario())


@pytest.mark.slow
def test_sigterm_gives_open_streams_their_final_text_then_1012():
    """Live streams at SIGTERM: each gets the final text of the audio it sent (the offline text of that
    audio), marked drained, then close code 1012; then the process ends by the signal."""
    pytest.importorskip("websockets")
    from websockets.sync.client import connect

    process, port = _serve()
    samples, rate = an4()
    pcm = (np.clip(np.tile(samples, 3), -1, 1) * 32767).astype("<i2")  # several seconds: partials come
    _, offline, _ = post(f"http://127.0.0.1:{port}/v1/transcribe", wav_bytes(pcm.astype(np.float32) / 32768, rate))
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/v1/stream")) for _ in range(2)]
        for ws in streams:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(pcm.tobytes())  # the whole utterance, no end-of-stream: the client is still talking
        for ws in streams:  # the server has taken the audio in once a partial came back
            assert json.loads(ws.recv(timeout=30))["type"] == "partial"
        process.send_signal(signal.SIGTERM)
        for ws in streams:
            while True:
                message = json.loads(ws.recv(timeout=30))
                if message["type"] != "partial":
                    break
            assert message["type"] == "final" and message["drained"] is True, message
            assert message["duration"] == pytest.approx(len(pcm) / rate, abs=1e-3)
            assert message["text"] == offline["text"] and offline["text"].strip()
            with pytest.raises(Exception):
                ws.recv(timeout=10)
            assert ws.close_code == 1012
    out, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM and "Application shutdown complete" in err, err
    assert "ending 2 open stream(s) with their final text" in err
    access = [json.loads(line.split("nemo_asr.serve.access: ", 1)[1]) for line in err.splitlines()
              if "nemo_asr.serve.access: " in line]
    assert [a["outcome"] for a in access if a["path"] == "/v1/stream"] == ["drained", "drained"]
