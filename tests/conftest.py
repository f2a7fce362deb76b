import os
import socket
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "tests", "scripts")


@pytest.fixture(autouse=True)
def _export_cache(monkeypatch, tmp_path_factory):
    """Exported models are cached under the test run's temporary folder, never in ~/.cache."""
    monkeypatch.setenv("NEMO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "exports"))


@pytest.fixture(autouse=True)
def _cpu_defaults():
    """The suite runs on the CPU, also on a machine with CUDA: modules a test builds without
    a factory (or before its factory) default to the CPU. A factory a test creates sets the
    default for later modules only, and is not the default factory of the next test."""
    from nemo_core import NeuralModuleFactory, runtime
    from nemo_core.enums import DeviceType

    runtime.set_defaults(DeviceType.CPU, None)
    torch.manual_seed(0)
    yield
    NeuralModuleFactory.reset_default_factory()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


PYTHON = sys.executable


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models are fastest so, and OpenMP threads spinning for
    per-step RNN ops slow a shared CPU down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
