"""`pip install .` (not only editable) must carry the shipped weights and examples."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_models_and_examples(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("audioe2e-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "audioe2e/models/manifest.json" in names
    for entry in json.loads((ROOT / "models" / "manifest.json").read_text()).values():
        assert f"audioe2e/models/{entry['file']}" in names
    assert {"audioe2e/examples/mix.wav", "audioe2e/examples/noisy.wav"} <= names
    # The compiled GRU loop of the tiny enhancer's fast path is built into the wheel (optional
    # extension: only where a C compiler is present).
    import shutil
    if shutil.which("cc") or shutil.which("gcc"):
        assert any(n.startswith("audioe2e/_gru.") and n.endswith((".so", ".pyd")) for n in names)
