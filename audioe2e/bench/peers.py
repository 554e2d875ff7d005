"""The peers audioe2e is measured against, each as a plain numpy function on `[T]` float32.

Enhancement: RNNoise (`pyrnnoise`, low-level frame API at 48 kHz: its file API is broken),
spectral gating (`noisereduce`, non-stationary and stationary), oracle ideal ratio / binary
masks (upper bounds of any STFT masker, from the known clean speech and noise). Separation:
the same oracle masks per speaker. Codecs: Opus (`opusenc`/`opusdec`, Debian opus-tools) and
Codec 2 (`c2enc`/`c2dec`, Debian codec2, 8 kHz raw s16), run as subprocesses on temp files;
they return the decoded signal (same length as the input, delay removed) and the encoded
file's size in bytes, so the bitrate is the true one, container overhead included.
A missing package or binary raises `PeerUnavailable` with the reason; `status()` lists them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..metrics import resample

RNNOISE_RATE, RNNOISE_FRAME = 48000, 480
RNNOISE_DELAY = 960      # samples at 48 kHz by which the output lags the input (20 ms; measured)
N_FFT, HOP = 512, 128    # oracle masks' STFT


class PeerUnavailable(RuntimeError):
    """A peer's package or binary is missing here."""


def status() -> dict[str, str | None]:
    """Peer name → None if usable, else the reason it is not."""
    out: dict[str, str | None] = {}
    for name, mod in (("rnnoise", "pyrnnoise"), ("noisereduce", "noisereduce")):
        try:
            __import__(mod)
            out[name] = None
        except Exception as e:
            out[name] = f"{mod} not installed ({type(e).__name__}); pip install {mod}"
    for name, bins, pkg in (("opus", ("opusenc", "opusdec"), "opus-tools"),
                            ("codec2", ("c2enc", "c2dec"), "codec2")):
        miss = [b for b in bins if shutil.which(b) is None]
        out[name] = f"{', '.join(miss)} not found (apt-get install {pkg})" if miss else None
    return out


def _need(name: str) -> None:
    reason = status()[name]
    if reason:
        raise PeerUnavailable(reason)


# ----------------------------------------------------------------------------- enhancement
def rnnoise(x: np.ndarray, rate: int = 16000) -> np.ndarray:
    """RNNoise (Valin 2018) through pyrnnoise's library: resample to 48 kHz, 16-bit scale,
    10 ms frames into `rnnoise_process_frame` (called directly on float buffers: pyrnnoise's
    own wrapper casts the output to int16 without clipping, which wraps loud peaks around),
    one state per call; the output is shifted back by its 20 ms delay."""
    try:
        import ctypes

        from pyrnnoise import rnnoise as rn
    except Exception as e:
        raise PeerUnavailable(f"pyrnnoise not installed ({e})") from None
    y48 = resample(x, rate, RNNOISE_RATE)
    n = len(y48)
    pad = (-(n + RNNOISE_DELAY)) % RNNOISE_FRAME + RNNOISE_DELAY
    buf = np.ascontiguousarray(np.clip(np.pad(y48, (0, pad)) * 32768.0, -32768, 32767), np.float32)
    out = np.empty_like(buf)
    ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))  # noqa: E731
    st = rn.create()
    try:
        for i in range(0, len(buf), RNNOISE_FRAME):
            rn.lib.rnnoise_process_frame(st, ptr(out[i:i + RNNOISE_FRAME]), ptr(buf[i:i + RNNOISE_FRAME]))
    finally:
        rn.destroy(st)
    y = out[RNNOISE_DELAY:RNNOISE_DELAY + n] / 32768.0
    return _fit(resample(y, RNNOISE_RATE, rate), len(x))


def spectral_gating(x: np.ndarray, rate: int = 16000, stationary: bool = False) -> np.ndarray:
    """noisereduce (Sainburg 2020) with its defaults; non-stationary gating by default."""
    try:
        import noisereduce as nr
    except Exception as e:
        raise PeerUnavailable(f"noisereduce not installed ({e})") from None
    y = nr.reduce_noise(y=np.asarray(x, np.float32), sr=rate, stationary=stationary, n_jobs=1)
    return _fit(np.asarray(y, np.float32), len(x))


def _stft(x: np.ndarray) -> np.ndarray:
    """Hann-windowed rfft frames `[K, F]`, centred (reflect padding of N_FFT/2 each side)."""
    xp = np.pad(np.asarray(x, np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(xp, N_FFT)[::HOP]
    return np.fft.rfft(frames * np.hanning(N_FFT + 1)[:-1], axis=-1)


def _istft(X: np.ndarray, n: int) -> np.ndarray:
    """Weighted overlap-add inverse of `_stft` (exact for an unmodified spectrum)."""
    w = np.hanning(N_FFT + 1)[:-1]
    frames = np.fft.irfft(X, N_FFT, axis=-1) * w
    total = (len(frames) - 1) * HOP + N_FFT
    y, norm = np.zeros(total), np.zeros(total)
    for k, f in enumerate(frames):
        y[k * HOP:k * HOP + N_FFT] += f
        norm[k * HOP:k * HOP + N_FFT] += w * w
    y = y / np.maximum(norm, 1e-8)
    return y[N_FFT // 2:N_FFT // 2 + n].astype(np.float32)


def oracle_masks(mix: np.ndarray, sources: np.ndarray, kind: str = "irm") -> np.ndarray:
    """Apply ideal masks to the mixture's STFT (512/128, Hann). `sources` `[S, T]` are the
    wanted signals; whatever of `mix` they do not explain is the noise. IRM: sqrt of the
    power ratio |S_i|² / (Σ|S_j|² + |N|²); IBM: 1 where source i dominates every other
    component (0 dB local criterion). Returns the estimates `[S, T]`."""
    sources = np.atleast_2d(np.asarray(sources, np.float64))
    noise = np.asarray(mix, np.float64) - sources.sum(0)
    M = _stft(mix)
    P = np.stack([np.abs(_stft(s)) ** 2 for s in sources])    # [S, K, F]
    Pn = np.abs(_stft(noise)) ** 2
    if kind == "irm":
        masks = np.sqrt(P / (P.sum(0) + Pn + 1e-12))
    elif kind == "ibm":
        allp = np.concatenate([P, Pn[None]])
        masks = np.stack([(P[i] > np.delete(allp, i, 0).max(0)).astype(np.float64)
                          for i in range(len(P))])
    else:
        raise ValueError(f"unknown oracle mask '{kind}' (irm, ibm)")
    return np.stack([_istft(M * m, len(mix)) for m in masks])


# ----------------------------------------------------------------------------- codecs
def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-300:]}")


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def opus(x: np.ndarray, rate: int, kbps: float) -> tuple[np.ndarray, int, int]:
    """Opus via `opusenc --bitrate kbps` (VBR, default complexity 10, 20 ms frames) and
    `opusdec --rate rate`; opusdec removes the pre-skip and trims to the granule position,
    so the output lines up with the input. Returns (decoded [T], .opus file bytes, bytes
    of the audio pages only)."""
    _need("opus")
    import soundfile as sf
    with tempfile.TemporaryDirectory(prefix="ae2bench") as d:
        src, enc, dec = (os.path.join(d, f) for f in ("in.wav", "x.opus", "out.wav"))
        sf.write(src, np.clip(x, -1, 1), rate, subtype="PCM_16")
        _run(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", src, enc])
        _run(["opusdec", "--quiet", "--rate", str(rate), enc, dec])
        y, r = sf.read(dec, dtype="float32", always_2d=True)
        return _fit(resample(y.mean(1), r, rate), len(x)), os.path.getsize(enc), ogg_stream_bytes(enc)


CODEC2_DELAY = 130  # samples at 8 kHz by which c2dec's output lags c2enc's input (measured)
C2_HEADER = 7       # bytes of the .c2 file header (magic, version, mode, flags)


def ogg_stream_bytes(path: str) -> int:
    """Bytes of an Ogg Opus file without its header pages (OpusHead, OpusTags: granule
    position 0), i.e. the audio pages, page headers included."""
    data = open(path, "rb").read()
    at, total = 0, 0
    while at + 27 <= len(data) and data[at:at + 4] == b"OggS":
        granule = int.from_bytes(data[at + 6:at + 14], "little", signed=True)
        nseg = data[at + 26]
        size = 27 + nseg + sum(data[at + 27:at + 27 + nseg])
        if granule > 0:
            total += size
        at += size
    return total


def codec2(x: np.ndarray, rate: int, bps: int) -> tuple[np.ndarray, int, int]:
    """Codec 2 at `bps` (3200, 2400, 1600, ...): resample to 8 kHz, raw s16, c2enc/c2dec,
    back to `rate`, its delay removed. Returns (decoded [T], .c2 file bytes, bytes without
    the file header)."""
    _need("codec2")
    with tempfile.TemporaryDirectory(prefix="ae2bench") as d:
        src, enc, dec = (os.path.join(d, f) for f in ("in.raw", "x.c2", "out.raw"))
        x8 = resample(x, rate, 8000)
        np.clip(x8 * 32768.0, -32768, 32767).astype("<i2").tofile(src)
        _run(["c2enc", str(bps), src, enc])
        _run(["c2dec", str(bps), enc, dec])
        y8 = np.fromfile(dec, "<i2").astype(np.float32)[CODEC2_DELAY:] / 32768.0
        size = os.path.getsize(enc)
        with open(enc, "rb") as f:
            head = C2_HEADER if f.read(3) == b"\xc0\xde\xc2" else 0
        return _fit(resample(y8, 8000, rate), len(x)), size, size - head


def align(y: np.ndarray, x: np.ndarray, max_lag: int = 800) -> tuple[np.ndarray, int]:
    """Shift `y` so it best lines up with `x` (cross-correlation peak within ±max_lag
    samples); returns (shifted y, lag) with lag > 0 meaning y was late."""
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    c = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    lag = int(lags[np.argmax(c[lags])])
    if lag > 0:
        y = np.concatenate([y[lag:], np.zeros(lag, y.dtype)])
    elif lag < 0:
        y = np.concatenate([np.zeros(-lag, y.dtype), y[:lag]])
    return y, lag
