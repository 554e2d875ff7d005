"""Audio helpers for the corpus builder: decode anything, resample, trim, split, write.

Everything here works on mono float32 numpy arrays at ``RATE`` (16 kHz) and needs no torch.
Decoding uses soundfile first and falls back to ``ffmpeg`` (G.722, GSM, ...), which is asked
for 16 kHz mono float output directly.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 16000
MAX_PIECE_S = 20.0   # long files are cut into pieces of at most this length
MIN_SPEECH_S = 0.5   # shorter (after trimming) files are dropped
MARGIN_S = 0.15      # silence kept around trimmed speech (the contract says <= 0.2 s)
FRAME = 160          # 10 ms analysis frames for trimming
FFMPEG_EXTS = {".g722", ".gsm", ".mp3", ".m4a", ".aac", ".wma", ".alaw", ".ulaw", ".sln", ".g729"}


def resample(x: np.ndarray, rate: int, target: int = RATE) -> np.ndarray:
    """Resample ``x`` ([T] float32) from ``rate`` to ``target`` with soxr (high quality)."""
    if rate == target or len(x) == 0:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x, rate, target, quality="HQ").astype(np.float32, copy=False)


def _ffmpeg(path: Path) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(RATE),
           "-f", "f32le", "-"]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg cannot decode {path}: {res.stderr.decode(errors='replace').strip()[:200]}")
    return np.frombuffer(res.stdout, dtype="<f4").copy()


def load(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 at 16 kHz; return (audio [T], original rate)."""
    path = Path(path)
    if path.suffix.lower() not in FFMPEG_EXTS:
        try:
            x, rate = sf.read(str(path), dtype="float32", always_2d=True)
            return resample(x.mean(axis=1), rate), int(rate)
        except (RuntimeError, sf.LibsndfileError):
            pass
    return _ffmpeg(path), native_rate(path)


def native_rate(path: Path) -> int:
    """The sample rate of ``path`` as stored (cheap: header only), as ``load`` reports it."""
    path = Path(path)
    if path.suffix.lower() not in FFMPEG_EXTS:
        try:
            return int(sf.info(str(path)).samplerate)
        except (RuntimeError, sf.LibsndfileError):
            pass
    return 8000 if path.suffix.lower() in {".gsm", ".alaw", ".ulaw", ".sln", ".g729"} else RATE


def frame_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of consecutive 10 ms frames ([T] -> [ceil(T/160)])."""
    n = -(-len(x) // FRAME)
    pad = np.zeros(n * FRAME, np.float32)
    pad[: len(x)] = x
    ms = np.mean(pad.reshape(n, FRAME).astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(ms + 1e-12)


def trim(x: np.ndarray, speech: bool = True) -> np.ndarray:
    """Cut leading/trailing silence; keep ``MARGIN_S`` around speech.

    Speech threshold adapts to the file: 12 dB over its noise floor (10th percentile frame),
    at least -70 dBFS and 50 dB under the loudest frame, at most 25 dB under it. Noise keeps
    everything within 65 dB of its loudest frame (only digital silence is cut).
    Returns an empty array when nothing is above the threshold.
    """
    if len(x) == 0:
        return x
    db = frame_db(x)
    peak = db.max()
    floor = np.percentile(db, 10)
    if speech:
        thr = min(max(floor + 12, peak - 50, -70.0), peak - 25)
    else:
        thr = max(peak - 65, -75.0)
    active = np.flatnonzero(db > thr)
    if len(active) == 0:
        return x[:0]
    margin = int(MARGIN_S * RATE) if speech else 0
    start = max(0, active[0] * FRAME - margin)
    end = min(len(x), (active[-1] + 1) * FRAME + margin)
    return x[start:end]


def is_silent(x: np.ndarray, speech: bool = True) -> bool:
    """True for near-silent audio: loudest 10 ms frame under -45 dBFS (speech) / -55 (noise)."""
    if len(x) == 0:
        return True
    return bool(frame_db(x).max() < (-45.0 if speech else -55.0))


def split(x: np.ndarray, max_s: float = MAX_PIECE_S) -> list[np.ndarray]:
    """Cut ``x`` into equal pieces of at most ``max_s`` seconds (one piece if short enough).

    Cut points move to the quietest 10 ms frame within +-1 s of the equal split, so speech
    is rarely cut inside a word.
    """
    n = int(np.ceil(len(x) / (max_s * RATE)))
    if n <= 1:
        return [x]
    db = frame_db(x)
    cuts = [0]
    for i in range(1, n):
        c = int(round(i * len(x) / n / FRAME))
        lo, hi = max(c - 100, cuts[-1] // FRAME + 1), min(c + 100, len(db) - 1)
        if hi > lo:
            c = lo + int(np.argmin(db[lo:hi]))
        cuts.append(c * FRAME)
    cuts.append(len(x))
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        # never exceed max_s even after moving a cut point
        while b - a > max_s * RATE:
            out.append(x[a: a + int(max_s * RATE)])
            a += int(max_s * RATE)
        out.append(x[a:b])
    return out


def write(path: Path, x: np.ndarray) -> None:
    """Write 16 kHz mono PCM_16 WAV atomically (temp file + rename); rescale if it would clip."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0.999:
        x = x * (0.999 / peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), x, RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def prepare(x: np.ndarray, speech: bool) -> list[np.ndarray]:
    """Trim, split and filter one decoded file into the pieces worth keeping."""
    x = trim(x, speech)
    pieces = []
    for p in split(x):
        if speech:
            p = trim(p, True)
        if len(p) >= MIN_SPEECH_S * RATE and not is_silent(p, speech):
            pieces.append(p)
    return pieces
