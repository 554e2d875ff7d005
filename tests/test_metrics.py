"""Metrics, folder evaluation and the bench's peer wrappers, on small synthetic signals."""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from audioe2e import metrics as M

RATE = 16000
has = lambda mod: importlib.util.find_spec(mod) is not None  # noqa: E731


def speechlike(seconds=2.0, seed=0, f0=140.0):
    """Harmonic tone with a syllable-rate envelope: enough structure for PESQ/STOI."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 20))
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    return (0.1 * env * x / np.abs(x).max()).astype(np.float32)


# ----------------------------------------------------------------------------- SI-SDR / PIT
def test_si_sdr_analytic():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(16000)
    s -= s.mean()
    n = rng.standard_normal(16000)
    n -= n.mean()
    n -= (n @ s) / (s @ s) * s  # orthogonal to s: SI-SDR is exactly the energy ratio
    n *= np.linalg.norm(s) / np.linalg.norm(n) * 10 ** (-12 / 20)
    assert M.si_sdr(3.0 * s + n, s) == pytest.approx(12.0 + 20 * np.log10(3.0), abs=1e-6)
    assert M.si_sdr(-0.2 * (s + n), s) == pytest.approx(M.si_sdr(s + n, s), abs=1e-9)  # scale-invariant... sign too
    assert M.si_sdr(s, s) > 80
    assert M.si_sdri(s + n, s, s + 3 * n) == pytest.approx(20 * np.log10(3), abs=1e-6)
    batch = M.si_sdr(np.stack([s + n, s]), np.stack([s, s]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(12.0, abs=1e-6)


def test_pit_picks_permutation():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((3, 8000))
    est = ref[[2, 0, 1]] + 0.1 * rng.standard_normal((3, 8000))
    score, perm = M.pit_si_sdr(est, ref)
    assert perm == (1, 2, 0)  # est[perm[i]] estimates ref[i]
    assert score == pytest.approx(np.mean([M.si_sdr(est[p], ref[i]) for i, p in enumerate(perm)]))
    assert score > 15


# ----------------------------------------------------------------------------- PESQ / STOI
@pytest.mark.skipif(not has("pesq"), reason="pesq not installed")
def test_pesq_identical_high_noise_low():
    x = speechlike()
    noise = 0.1 * np.random.default_rng(3).standard_normal(len(x)).astype(np.float32)
    assert M.pesq_wb(x, x) > 4.0
    assert M.pesq_wb(x, noise) < 1.5
    assert M.pesq_nb(x, x) > 4.0
    assert M.pesq_wb(M.resample(x, RATE, 8000), M.resample(x, RATE, 8000), 8000) > 3.0  # any rate


@pytest.mark.skipif(not has("pystoi"), reason="pystoi not installed")
def test_stoi_identical_high_noise_low():
    x = speechlike(3.0)
    noise = 0.1 * np.random.default_rng(4).standard_normal(len(x)).astype(np.float32)
    assert M.stoi(x, x) > 0.99 and M.estoi(x, x) > 0.99
    assert M.stoi(x, noise) < 0.4


def test_missing_package_degrades(monkeypatch):
    real = M.importlib.import_module

    def fake(name, *a):
        if name == "pesq":
            raise ImportError("No module named 'pesq'")
        return real(name, *a)
    monkeypatch.setattr(M.importlib, "import_module", fake)
    x = speechlike(1.0)
    assert M.pesq_wb(x, x) is None and not M.available("pesq_wb")
    assert "pesq" in M.missing("pesq")
    assert M.score(x, x, RATE, ["si_sdr", "pesq_wb"])["pesq_wb"] is None


# ----------------------------------------------------------------------------- evaluate_dirs
def _write(path, x, rate=RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="FLOAT")


@pytest.fixture
def dirs(tmp_path):
    rng = np.random.default_rng(5)
    ref, est, mix = tmp_path / "ref", tmp_path / "est", tmp_path / "mix"
    for i in range(3):
        s = speechlike(1.0, seed=i)
        n = (0.03 * rng.standard_normal(len(s))).astype(np.float32)
        _write(ref / f"sub/u{i}.wav", s)
        _write(mix / f"sub/u{i}.wav", s + n)
        _write(est / f"sub/u{i}.wav", s + 0.3 * n)
    return ref, est, mix


def test_evaluate_dirs_pairs_and_si_sdri(dirs, tmp_path):
    ref, est, mix = dirs
    out = M.evaluate_dirs(ref, est, mix=mix, metrics=["si_sdr"], csv_path=tmp_path / "r.csv", quiet=True)
    assert out["n_files"] == 3 and out["task"] == "enhance"
    assert [r["file"] for r in out["files"]] == ["sub/u0", "sub/u1", "sub/u2"]
    assert out["mean"]["si_sdri"] == pytest.approx(20 * np.log10(1 / 0.3), abs=0.3)
    json.dumps(out)  # serialisable as is
    rows = list(csv.reader(open(tmp_path / "r.csv")))
    assert rows[0] == ["file", "si_sdr", "si_sdri"] and rows[-1][0] == "mean" and len(rows) == 5


def test_evaluate_dirs_missing_est(dirs):
    ref, est, _ = dirs
    (est / "sub/u1.wav").unlink()
    with pytest.raises(M.EvalError, match="1 reference.*u1"):
        M.evaluate_dirs(ref, est, metrics=["si_sdr"], quiet=True)


def test_evaluate_dirs_stem_suffix_and_trim(dirs, tmp_path):
    ref, est, _ = dirs
    flat = tmp_path / "flat"
    for p in sorted(est.rglob("*.wav")):  # beside-the-input names, other folder layout, longer
        x, _ = sf.read(str(p), dtype="float32")
        _write(flat / f"{p.stem}_enhanced.wav", np.concatenate([x, np.zeros(100, np.float32)]))
    out = M.evaluate_dirs(ref, flat, metrics="si_sdr", quiet=True)
    assert out["n_files"] == 3 and any("trimmed" in w for w in out["warnings"])


def test_evaluate_dirs_separation(tmp_path):
    ref, est = tmp_path / "ref", tmp_path / "est"
    a, b = speechlike(1.0, 0, 120.0), speechlike(1.0, 1, 210.0)
    _write(ref / "s1/m0.wav", a)
    _write(ref / "s2/m0.wav", b)
    _write(ref / "input/m0.wav", a + b)   # ignored: not a source
    _write(est / "m0_s1.wav", b)          # swapped speakers
    _write(est / "m0_s2.wav", a)
    out = M.evaluate_dirs(ref, est, mix=ref / "input", metrics=["si_sdr"], quiet=True)
    assert out["task"] == "separate" and out["files"][0]["perm"] == [2, 1]
    assert out["mean"]["si_sdr"] > 60 and out["mean"]["si_sdri"] > 50
    shutil.rmtree(est)
    _write(est / "m0.wav", np.stack([b, a], 1))  # one file, one channel per speaker
    assert M.evaluate_dirs(ref, est, metrics=["si_sdr"], quiet=True)["mean"]["si_sdr"] > 60


# ----------------------------------------------------------------------------- bench peers
def test_oracle_irm_beats_input():
    from audioe2e.bench import peers
    s = speechlike(2.0)
    n = (0.05 * np.random.default_rng(6).standard_normal(len(s))).astype(np.float32)
    base = M.si_sdr(s + n, s)
    for kind in ("irm", "ibm"):
        est = peers.oracle_masks(s + n, s[None], kind)
        assert est.shape == (1, len(s)) and M.si_sdr(est[0], s) > base + 3


@pytest.mark.skipif(shutil.which("opusenc") is None or shutil.which("opusdec") is None,
                    reason="opus-tools not installed")
def test_opus_roundtrip_length():
    from audioe2e.bench import peers
    x = speechlike(1.3)
    y, size, stream = peers.opus(x, RATE, 12)
    assert y.shape == x.shape and 0 < stream < size
    assert M.si_sdr(y, x) > 0


@pytest.mark.skipif(shutil.which("c2enc") is None or shutil.which("c2dec") is None,
                    reason="codec2 not installed")
def test_codec2_roundtrip_length():
    from audioe2e.bench import peers
    x = speechlike(1.3)
    y, size, stream = peers.codec2(x, RATE, 3200)
    assert y.shape == x.shape and stream == size - 7
    assert stream * 8 / 1.3 == pytest.approx(3200, rel=0.1)


def test_align_recovers_lag():
    from audioe2e.bench import peers
    x = speechlike(1.0)
    y = np.concatenate([np.zeros(37, np.float32), x[:-37]])
    z, lag = peers.align(y, x, 100)
    assert lag == 37 and M.si_sdr(z[:-37], x[:-37]) > 60


def test_codec_stage_truncation_roundtrip():
    """The bench encodes once and keeps the first n_q stages per bitrate: that must equal
    encoding at n_q, and the .ae2 round trip must give the input length."""
    torch = pytest.importorskip("torch")
    from audioe2e.bench import ours
    from audioe2e.nets.codec import Codec, CodecConfig
    torch.manual_seed(0)
    codec = Codec(CodecConfig(channels=8, n_filters=32, dim=16, codebook_size=16, n_q=4)).eval()
    codec.model_name, codec.weights_sha256 = "test", "0" * 64
    x = speechlike(0.5)
    with torch.inference_mode():
        full = codec.make_encoder(4).feed(torch.from_numpy(x)[None])
        two = codec.make_encoder(2).feed(torch.from_numpy(x)[None])
    assert torch.equal(full[:2], two)
    out = ours.codec_roundtrips(codec, x, ((0.4, False), (0.8, False), (0.8, True)))
    (y2, size2, head2, nq2), (y4, size4, _, nq4) = out[(0.4, False)], out[(0.8, False)]
    assert (nq2, nq4) == (2, 4) and y2.shape == y4.shape == x.shape and head2 < size2 < size4
    yv, sizev, headv, mean_stages = out[(0.8, True)]  # variable bitrate, as `encode` defaults to
    assert yv.shape == x.shape and 1 <= mean_stages <= 4 and headv < sizev


def test_bench_run_smoke(tmp_path, monkeypatch):
    """The bench finishes with no model shipped (rows say 'not available') and writes both files."""
    from audioe2e.bench import run
    d = tmp_path / "valsets" / "separate"
    rng = np.random.default_rng(7)
    lines = []
    for i in range(2):
        a, b = speechlike(1.0, i, 120.0), speechlike(1.0, i + 5, 230.0)
        for sub, x in (("input", a + b), ("s1", a), ("s2", b)):
            _write(d / sub / f"{i:04d}.wav", x + 1e-4 * rng.standard_normal(len(x)).astype(np.float32) * (sub == "input"))
        lines.append(json.dumps({"id": f"{i:04d}", "pair": "different" if i else "same"}))
    (d / "meta.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("AUDIOE2E_MODELS", str(tmp_path / "models"))
    assert run.main(["--valsets", str(tmp_path / "valsets"), "--out", str(tmp_path / "out"),
                     "--sections", "separate"]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["system"]: r for r in res["separate"]["rows"]}
    assert rows["audioe2e separator (learned front-end)"]["status"].startswith("not available")
    assert rows["oracle IRM (upper bound)"]["si_sdri"] > 5
    assert "Separation" in (tmp_path / "out" / "results.md").read_text()
