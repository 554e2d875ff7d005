"""The command line: pipes that stream, exit codes, one-line errors, JSON, flat memory."""
from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, read, run_cli, tones, write_wav


def wav_bytes(x, rate, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, x.T, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def test_import_is_light_and_version(cli_env):
    code = "import sys, audioe2e.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=cli_env, text=True)
    assert out.stdout.strip() == "False"
    p = run_cli(["--version"], cli_env)
    assert p.returncode == 0 and p.stdout.decode().startswith("audioe2e ")


def test_stdin_to_stdout_pipe(cli_env):
    """`enhance - -o -` then `separate - -o -` through real pipes; identity is bit-exact."""
    x = tones(16000, 16000, 2)
    data = wav_bytes(x, 16000, "PCM_16")
    ref, _ = sf.read(io.BytesIO(data), dtype="int16")
    p = run_cli(["enhance", "-", "-o", "-", "--json"], cli_env, input=data)
    assert p.returncode == 0, p.stderr
    assert p.stdout[4:8] == b"\xff\xff\xff\xff"  # streaming header
    y, rate = sf.read(io.BytesIO(p.stdout), dtype="int16")
    assert rate == 16000 and np.array_equal(y, ref)
    report = json.loads(p.stderr.decode()[p.stderr.decode().index("{"):])  # JSON on stderr
    assert report["files"][0]["outputs"] == ["-"]
    p = run_cli(["separate", "-", "-q"], cli_env, input=p.stdout)
    assert p.returncode == 0 and p.stderr == b""
    s, _ = sf.read(io.BytesIO(p.stdout), dtype="float32", always_2d=True)
    assert s.shape == (16000, 2)  # stereo downmixed, one channel per speaker


def test_pipe_streams_before_input_ends(cli_env):
    rate = 16000
    data = wav_bytes(tones(rate * 4, rate), rate)
    proc = subprocess.Popen([sys.executable, "-m", "audioe2e", "enhance", "-", "-o", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=cli_env)
    try:
        proc.stdin.write(data[: len(data) // 2])
        proc.stdin.flush()
        got, deadline = b"", time.time() + 30
        while len(got) < 44 + 8000 and time.time() < deadline:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                got += os.read(proc.stdout.fileno(), 65536)
        assert len(got) >= 44 + 8000, "no audio came out while the input was still open"
        proc.stdin.write(data[len(data) // 2:])
        proc.stdin.close()
        got += proc.stdout.read()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    y, _ = sf.read(io.BytesIO(got), dtype="float32")
    assert y.shape == (rate * 4,)


def test_errors_are_one_line_and_exit_codes(cli_env, tmp_path, wav):
    src = wav("a.wav")
    (tmp_path / "bad.wav").write_bytes(b"garbage" * 20)
    p = run_cli(["enhance", src, str(tmp_path / "bad.wav"), str(tmp_path / "none.wav"),
                 "-o", str(tmp_path / "out")], cli_env)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 1
    assert f"error: {tmp_path / 'bad.wav'}: not a readable audio file" in err[1]
    assert err[2] == f"error: {tmp_path / 'none.wav'}: no such file"
    assert "2 of 3 files failed" in err[-1] and "Traceback" not in p.stderr.decode()
    assert (tmp_path / "out" / "a.wav").exists()


def test_usage_and_model_errors_exit_codes(invoke, monkeypatch, tmp_path, wav):
    src = wav("a.wav")
    res = invoke(["enhance", src, src + "x", "-o", "-"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and res.stdout == ""
    monkeypatch.delenv("AUDIOE2E_FAKE_MODEL")
    monkeypatch.setenv("AUDIOE2E_MODELS", str(tmp_path / "nomodels"))
    res = invoke(["separate", src, "-o", tmp_path / "s"])
    assert res.exit_code == 3 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_cli_batch_json_and_skip(invoke, tmp_path, wav):
    a, b = wav("a.wav"), wav("b.wav", rate=8000, channels=2)
    (tmp_path / "c.wav").write_bytes(b"RIFF")
    out = tmp_path / "out"
    res = invoke(["enhance", a, b, str(tmp_path / "c.wav"), "-o", out, "--json", "-q"])
    assert res.exit_code == 1
    rep = json.loads(res.stdout)
    assert (rep["ok"], rep["failed"]) == (2, 1)
    f = rep["files"][0]
    assert set(f) >= {"input", "outputs", "duration_s", "seconds", "realtime_factor",
                      "clipped", "status", "error", "model", "model_sha256", "device"}
    assert (f["model"], f["device"]) == ("fake-enhancer", "cpu")
    assert f["outputs"] == [str(out / "a.wav")] and f["duration_s"] == 0.5
    assert "c.wav" in res.stderr
    res = invoke(["enhance", a, b, "-o", out, "--skip-existing", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["skipped"] == 2
    res = invoke(["enhance", a, "-o", out / "a.wav"])
    assert res.exit_code == 1 and "exists" in res.stderr
    res = invoke(["enhance", a, "-o", out / "a.wav", "-f", "--tiny", "--mix", "0.5"])
    assert res.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav"]


def test_cli_separate_template_and_usage_errors(invoke, tmp_path, wav):
    a = wav("a.wav")
    res = invoke(["separate", a, "-o", tmp_path / "o", "--template", "{stem}_spk{n}.wav"])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_spk1.wav", "a_spk2.wav"]
    assert invoke(["separate", a, "-o", tmp_path / "p", "--template", "x.wav"]).exit_code == 2
    assert invoke(["enhance", a, "--device", "tpu"]).exit_code == 2
    res = invoke(["enhance", a, "--atten-lim", "nan", "-o", tmp_path / "n.wav"])
    assert res.exit_code == 2 and "--atten-lim must be a number" in res.stderr
    assert not (tmp_path / "n.wav").exists()
    assert invoke(["enhance", a, "--clip", "fold", "-o", tmp_path / "q.wav"]).exit_code == 1
    assert invoke(["enhance"]).exit_code == 2


def test_cli_codec_info_models(invoke, tmp_path, wav):
    a = wav("a.wav", rate=22050, channels=2)
    assert invoke(["encode", a, "-o", tmp_path / "a.ae2", "--bitrate", "1.6"]).exit_code == 0
    res = invoke(["info", tmp_path / "a.ae2", a, "--json"])
    assert res.exit_code == 0
    ae2, audio = json.loads(res.stdout)
    assert ae2["header"]["orig_rate"] == 22050 and ae2["header"]["channels"] == 2
    assert audio["sample_rate"] == 22050 and audio["kind"] == "audio"
    assert invoke(["decode", tmp_path / "a.ae2", "-o", tmp_path / "d"]).exit_code == 0
    assert sf.info(str(tmp_path / "d" / "a.wav")).frames == sf.info(a).frames
    res = invoke(["info", tmp_path / "missing.ae2"])
    assert res.exit_code == 1 and res.stderr.startswith("error: ")
    res = invoke(["models", "--json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert res.exit_code == 0 and set(rows) >= {"codec"}
    res = invoke(["models"])
    assert res.exit_code == 0
    # each shipped card names the valset its numbers are on (rebuilt corpora can differ)
    for r in rows.values():
        if r["available"]:
            assert len(r["val_id"]) == 16 and r["val_id"][:8] in res.stdout
    # and the enhancers say which noise floor `enhance` keeps by default
    assert {n: rows[n].get("default_atten_lim_db", "-") for n in rows} == {
        "separator": "-", "enhancer": None, "enhancer-tiny": 30.0, "codec": "-"}
    assert "noise" in res.stdout and "floor" in res.stdout  # the table's notes (wrapped) say it


def test_cli_bench_eval_and_subapps(invoke, tmp_path):
    res = invoke(["bench", "enhancer-tiny", "--seconds", "0.5", "--repeats", "1", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["rtf_1_thread"] > 0
    res = invoke(["eval", "--ref", tmp_path / "nope", "--est", tmp_path])
    assert res.exit_code in (2, 3) and res.stderr.startswith("error: ")  # bad folder / no module
    for sub in ("corpus", "train"):
        res = invoke([sub, "--help"])
        assert res.exit_code in (0, 3) and ("Usage" in res.stdout or "not available" in res.stderr)


@pytest.mark.parametrize("minutes", [20])
def test_memory_flat_in_file_length(cli_env, tmp_path, minutes):
    """Peak RSS for a long file stays within 150 MB of a 1-minute file (identity model at
    16 kHz, the input at 22.05 kHz so both resamplers run)."""
    rate = 22050
    blk = tones(rate * 60, rate)[0] * 0.5  # one minute
    for name, mins in (("short.wav", 1), ("long.wav", minutes)):
        with sf.SoundFile(str(tmp_path / name), "w", rate, 1, "PCM_16") as f:
            for _ in range(mins):
                f.write(blk)
    code = ("import resource, sys\nfrom audioe2e.cli import main\nsys.argv = ['audioe2e'] + "
            "sys.argv[1:]\ntry:\n    main()\nfinally:\n    print('RSS', resource.getrusage("
            "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    rss = {}
    for name in ("short.wav", "long.wav"):
        p = subprocess.run([sys.executable, "-c", code, "enhance", str(tmp_path / name), "-q",
                            "-o", str(tmp_path / ("out_" + name))],
                           capture_output=True, env=cli_env, text=True, timeout=300, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        rss[name] = int(p.stderr.split("RSS")[-1]) / 1024
    assert sf.info(str(tmp_path / "out_long.wav")).frames == rate * 60 * minutes
    assert rss["long.wav"] - rss["short.wav"] < 150, rss


def test_cli_seekable_stdin_any_format(invoke, tmp_path):
    """`< file.flac`: a seekable stdin is read by soundfile (any format it knows)."""
    buf = io.BytesIO()
    sf.write(buf, tones(8000, 8000, 2).T, 8000, format="FLAC", subtype="PCM_24")
    res = invoke(["enhance", "-", "-o", tmp_path / "x.flac", "--threads", "1", "--subtype",
                  "FLOAT"], input=buf.getvalue())
    assert res.exit_code == 0, res.stderr
    i = sf.info(str(tmp_path / "x.flac"))
    assert (i.samplerate, i.channels, i.frames, i.format, i.subtype) == \
        (8000, 2, 8000, "FLAC", "PCM_24")  # FLAC cannot hold float: 24 bit
