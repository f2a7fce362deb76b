"""``nemo-serve`` as a subprocess on a free loopback port, for the service benchmarks."""
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``with ServerProcess(repo, model_config, load_dir, [extra flags]) as server:`` -> ready on ``server.port``."""

    def __init__(self, repo, model_config, load_dir, extra=()):
        self.port = free_port()
        command = [sys.executable, "-m", "nemo_asr.serve.cli", "--model_config", model_config, "--load_dir", load_dir,
                   "--port", str(self.port), "--log_level", "warning", *extra]
        self.process = subprocess.Popen(command, cwd=repo, stderr=subprocess.DEVNULL)

    def __enter__(self):
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nemo-serve exited with status {self.process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("nemo-serve did not become ready within 120 s")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(60)
