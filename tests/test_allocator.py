"""The CLI's allocator setting (audioe2e/allocator.py): applied on glibc, a user's own wins."""
import subprocess
import sys

import pytest

from audioe2e.allocator import is_glibc, keep_freed_memory


@pytest.mark.skipif(not is_glibc(), reason="glibc only")
def test_thresholds_are_set_on_glibc_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert keep_freed_memory() is True
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not is_glibc(), reason="glibc only")
def test_streaming_does_not_page_fault_per_block(tmp_path):
    """The reason for the setting: with it, enhancing 60 s with the tiny model takes a few
    thousand minor page faults beyond start-up, not one set per block (~30,000 without)."""
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "in.wav", (0.1 * np.random.default_rng(0).standard_normal(16000 * 60)).astype(np.float32),
             16000, subtype="PCM_16")
    sf.write(tmp_path / "short.wav", np.zeros(1600, np.float32), 16000, subtype="PCM_16")
    code = ("import resource, sys; from audioe2e.cli import main; sys.argv = ['audioe2e', 'enhance', '--tiny', "
            "sys.argv[1], '-o', sys.argv[2], '-f', '--quiet', '--threads', '1']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)")

    def faults(name):
        p = subprocess.run([sys.executable, "-c", code, str(tmp_path / name), str(tmp_path / "out.wav")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return int(p.stdout.split()[-1])

    assert faults("in.wav") - faults("short.wav") < 8000
