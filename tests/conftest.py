"""Shared fixtures: tiny synthetic WAVs, fake models, and helpers to run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


# `make test` runs the suite on one pytest-xdist worker per core: each worker (and every CLI
# subprocess it starts, which inherits the environment) then keeps to one thread, so the
# workers share the cores instead of oversubscribing them. Set before numpy and torch are
# imported, which read these once. Results do not depend on it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def tones(n: int, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Band-limited test signal `[C, n]` (sines below 3.5 kHz, so any rate >= 8 kHz holds it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    out = []
    for c in range(channels):
        f = rng.uniform(150, 3500, 4)
        ph = rng.uniform(0, 2 * np.pi, 4)
        out.append(sum(0.12 * np.sin(2 * np.pi * f[i] * t + ph[i]) for i in range(4)))
    return np.asarray(out, dtype=np.float32)


def write_wav(path, x: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str | None = None):
    """Write `[C, T]` float audio; returns the path as str."""
    sf.write(str(path), np.asarray(x).T, rate, subtype=subtype, format=fmt)
    return str(path)


def read(path) -> tuple[np.ndarray, int]:
    """`[C, T]` float32 and the rate."""
    x, r = sf.read(str(path), dtype="float32", always_2d=True)
    return x.T, r


@pytest.fixture
def wav(tmp_path):
    """Factory: `wav(name, seconds=0.5, rate=16000, channels=1, subtype="PCM_16")` -> path."""
    def make(name="in.wav", seconds=0.5, rate=16000, channels=1, subtype="PCM_16", seed=0):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return write_wav(p, tones(int(seconds * rate), rate, channels, seed), rate, subtype)
    return make


@pytest.fixture
def enhancer():
    from audioe2e.testing import FakeEnhancer  # torch only for the tests that need it
    return FakeEnhancer()


@pytest.fixture
def separator():
    from audioe2e.testing import FakeSeparator
    return FakeSeparator()


@pytest.fixture
def codec():
    from audioe2e.testing import FakeCodec
    return FakeCodec()


@pytest.fixture
def cli_env(tmp_path):
    """Environment for a CLI subprocess: this checkout on the path, fake models on."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["AUDIOE2E_FAKE_MODEL"] = "identity"
    env.pop("AUDIOE2E_DEBUG", None)
    return env


def run_cli(args, env, input: bytes | None = None, cwd=None, timeout=60):
    """Run `python -m audioe2e ARGS` and return the CompletedProcess (bytes)."""
    return subprocess.run([sys.executable, "-m", "audioe2e", *map(str, args)], input=input,
                          capture_output=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def invoke(monkeypatch):
    """In-process CLI runner with fake models: `invoke(args, input=bytes)` -> click Result."""
    from typer.testing import CliRunner

    from audioe2e.cli import app

    monkeypatch.setenv("AUDIOE2E_FAKE_MODEL", "identity")
    monkeypatch.delenv("AUDIOE2E_DEBUG", raising=False)
    runner = CliRunner()

    def run(args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input)
    return run
