"""Shared fixtures. No test may reach the network: outbound internet sockets are refused for the session."""

from __future__ import annotations

import os
import socket

import pytest

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"a test tried to reach the network ({address!r}); tests must stay offline")
    return _real_connect(self, address)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect
    # The suite's models are tiny: one intra-op thread is faster for them, and a second thread only fights
    # over the CPU with the other process on a loaded 2-core machine (measured: the suite took 212 s beside
    # two busy processes with torch's default two threads). The variable reaches the subprocesses tests start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_data_root(tmp_path_factory):
    """A data root holding the synthetic benchmark, generated once per test session."""
    from corrbench.datasets.synthetic.generate import generate_synthetic

    root = tmp_path_factory.mktemp("data")
    generate_synthetic(root / "corrbench-synthetic", seed=0)
    return root


@pytest.fixture
def data_env(synthetic_data_root, monkeypatch):
    """Point $CORRBENCH_DATA at the session's synthetic data root."""
    monkeypatch.setenv("CORRBENCH_DATA", str(synthetic_data_root))
    return synthetic_data_root


@pytest.fixture
def invoke(tmp_path, data_env, monkeypatch):
    """Run the CLI in a fresh working folder on the synthetic data root; exceptions propagate to the test."""
    from click.testing import CliRunner

    from corrbench.cli import cli

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def _invoke(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return _invoke
