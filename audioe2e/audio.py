"""Block-wise audio I/O: files or stdin/stdout, atomic writes, clipping.

Why: memory must stay flat in file length and pipes must stream (DESIGN §1), so audio is
never read whole. Blocks are float32 numpy arrays shaped `[C, T]` (channels first, like the
models). Seekable inputs go through soundfile (WAV, FLAC, OGG, ...); a non-seekable stdin is
parsed incrementally as WAV by `wavpipe`. Files are written to `<dest>.<random>.tmp` in the
destination folder and renamed on success, so a failure never leaves a half-written output;
stdout gets a WAV header with "unknown length" and frames as they come.

Clipping policy (`clip=`), for integer subtypes only (float outputs keep values beyond ±1):
- "clamp": clamp to [-1, 1]; the number of clamped samples is reported (`writer.clipped`).
- "rescale": for file outputs, the audio goes to a float temp file first; if its peak exceeds
  1 the whole file is scaled by 1/peak when converting to the final subtype (`writer.gain`),
  and `clipped` counts the samples that were beyond ±1. A stream cannot know its future peak,
  so on stdout "rescale" falls back to "clamp".
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

BLOCK = 16384  # frames per block read from files (~1 s at 16 kHz)
INT_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "VORBIS")  # VORBIS: decodes to ±1 too
OUT_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT")
CLIP_POLICIES = ("clamp", "rescale")
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
# Input rates accepted. Why a floor: below 8 kHz (telephone speech) there is no speech band
# left to enhance, and a 100 Hz "WAV" is a wrong file, not audio to upsample 160-fold; the
# ceiling is where soxr and the WAV header stop being sensible (384 kHz studio rates pass).
MIN_RATE, MAX_RATE = 8000, 384000


class AudioError(ValueError):
    """A bad input or output; the message is one line, meant for the user."""


@dataclass(frozen=True)
class AudioInfo:
    rate: int
    channels: int
    subtype: str
    frames: Optional[int]  # None when unknown (a pipe)
    format: str = "WAV"

    @property
    def duration(self) -> Optional[float]:
        return None if self.frames is None else self.frames / self.rate


def output_subtype(in_subtype: str, override: Optional[str] = None) -> str:
    """The subtype to write: `override`, else the input's if WAV can hold it, else PCM_16."""
    if override:
        if override.upper() not in OUT_SUBTYPES:
            raise AudioError(f"unsupported output subtype {override} (use {', '.join(OUT_SUBTYPES)})")
        return override.upper()
    if in_subtype == "DOUBLE":
        return "FLOAT"
    return in_subtype if in_subtype in OUT_SUBTYPES else "PCM_16"


class FileReader:
    """Reads a file (or a seekable stdin) through soundfile, block by block."""

    def __init__(self, src, block: int = BLOCK, name: str = "input"):
        import soundfile as sf

        try:
            self._f = sf.SoundFile(src)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            reason = str(e).split(":")[-1].strip() or "unknown error"
            raise AudioError(f"not a readable audio file ({reason})") from None
        f = self._f
        self.info = AudioInfo(f.samplerate, f.channels, f.subtype, f.frames, f.format)
        self.block = block
        if f.frames == 0:
            self.close()
            raise AudioError("zero-length audio")
        if f.channels < 1 or f.samplerate < 1:
            self.close()
            raise AudioError("invalid header (no channels or zero sample rate)")

    def blocks(self) -> Iterator[np.ndarray]:
        import soundfile as sf

        try:
            while True:
                data = self._f.read(self.block, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    return
                yield np.ascontiguousarray(data.T)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"corrupt audio data ({e})") from None

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_reader(path: str, block: int = BLOCK):
    """A reader for `path` or `-` (stdin): `.info` (AudioInfo) and `.blocks()` -> `[C, T]`."""
    if path == "-":
        stream = sys.stdin.buffer
        try:
            seekable = stream.seekable()
        except (OSError, ValueError):
            seekable = False
        if seekable:  # `< file.flac`: soundfile can read any format it knows
            return _rate_checked(FileReader(stream, block))
        from .wavpipe import WavPipeReader
        return _rate_checked(WavPipeReader(stream, block))
    p = Path(path)
    if not p.exists():
        raise AudioError("no such file")
    if p.is_dir():
        raise AudioError("is a directory")
    if not os.access(p, os.R_OK):
        raise AudioError("permission denied")
    if p.stat().st_size == 0:
        raise AudioError("empty file (zero-length audio)")
    return _rate_checked(FileReader(str(p), block))


def _rate_checked(reader):
    rate = reader.info.rate
    if not MIN_RATE <= rate <= MAX_RATE:
        reader.close()
        raise AudioError(f"unsupported sample rate {rate} Hz (audioe2e reads {MIN_RATE}-{MAX_RATE} Hz)")
    return reader


def first_and_rest(reader):
    """(first block, iterator over the rest) of a reader; zero-length audio and non-finite
    samples are errors here, once, for every verb that streams a file. Why NaN/Inf: one such
    sample in a float WAV would poison the recurrent models' state and turn every later
    output sample into NaN, so it is refused with where it is (output already written to a
    file is discarded like any other failure)."""
    blocks = _finite_blocks(reader.blocks(), reader.info.rate)
    first = next(blocks, None)
    if first is None:
        raise AudioError("zero-length audio")
    return first, blocks


def _finite_blocks(blocks: Iterator[np.ndarray], rate: int) -> Iterator[np.ndarray]:
    done = 0
    for b in blocks:
        bad = ~np.isfinite(b)
        if bad.any():
            at = done + int(np.argmax(bad.any(axis=0)))
            raise AudioError(f"non-finite sample (NaN or Inf) at {at / rate:.3f} s (frame {at})")
        done += b.shape[-1]
        yield b


def temp_path(dest: Path) -> Path:
    """`<dest>.<random>.tmp` in the destination folder, so `os.replace` is atomic."""
    return dest.with_name(f"{dest.name}.{secrets.token_hex(4)}.tmp")


class AtomicFile:
    """A binary file object that becomes `dest` only on `commit()`; `abort()` deletes it."""

    def __init__(self, dest: str | os.PathLike):
        self.dest = Path(dest)
        self.tmp = temp_path(self.dest)
        self.f = open(self.tmp, "xb")

    def commit(self):
        self.f.close()
        os.replace(self.tmp, self.dest)

    def abort(self):
        self.f.close()
        self.tmp.unlink(missing_ok=True)


class AudioWriter:
    """Writes `[C, T]` float32 blocks to `dest` (a path, or `-` for stdout) as they come.

    Use as a context manager or call `close()` (commit) / `abort()` (delete the temp).
    """

    def __init__(self, dest: str, rate: int, channels: int, subtype: str = "PCM_16",
                 clip: str = "clamp"):
        if clip not in CLIP_POLICIES:
            raise AudioError(f"unknown clip policy {clip!r} (use clamp or rescale)")
        self.dest, self.rate, self.channels = dest, int(rate), int(channels)
        self.subtype = subtype
        self.integer = subtype in INT_SUBTYPES
        self.clipped = 0
        self.gain = 1.0
        self.frames = 0
        self._peak = 0.0
        self._pipe = None
        self._sf = None
        self._tmp: Optional[Path] = None
        if dest == "-":
            from .wavpipe import WavPipeWriter
            self.clip = "clamp"
            self._pipe = WavPipeWriter(sys.stdout.buffer, self.rate, self.channels, subtype)
            return
        import soundfile as sf

        path = Path(dest)
        self.format = _FORMATS.get(path.suffix.lower(), "WAV")
        if not sf.check_format(self.format, subtype):  # e.g. FLOAT into .flac, PCM into .ogg
            self.subtype = "VORBIS" if self.format == "OGG" else "PCM_24"
            self.integer = self.subtype in INT_SUBTYPES
        self.clip = clip if self.integer else "clamp"
        # "rescale" first writes float WAV (any format can be made from it at the end)
        fmt, write_subtype = ("WAV", "FLOAT") if self.clip == "rescale" else (self.format, self.subtype)
        self._tmp = temp_path(path)
        try:
            self._sf = sf.SoundFile(str(self._tmp), "w", self.rate, self.channels,
                                    write_subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError) as e:
            self._tmp.unlink(missing_ok=True)
            raise OSError(f"cannot write {path}: {e}") from None

    def write(self, block: np.ndarray):
        if block.shape[-1] == 0:
            return
        x = np.asarray(block, dtype=np.float32)
        if self.integer:
            over = np.abs(x) > 1.0
            n = int(np.count_nonzero(over))
            if n:
                self.clipped += n
                if self.clip == "clamp":
                    x = np.clip(x, -1.0, 1.0)
                else:
                    self._peak = max(self._peak, float(np.abs(x).max()))
        self.frames += x.shape[-1]
        if self._pipe is not None:
            self._pipe.write(x)
        else:
            self._sf.write(x.T)

    def close(self):
        """Finish the output: flush stdout, or rename the temp file over `dest`."""
        if self._pipe is not None:
            self._pipe.flush()
            return
        if self._sf is None:
            return
        self._sf.close()
        self._sf = None
        try:
            if self.clip == "rescale":
                self._rescale_pass()
            os.replace(self._tmp, self.dest)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def _rescale_pass(self):
        """Convert the float temp file to the final subtype, scaled by 1/peak if it clips."""
        import soundfile as sf

        self.gain = 1.0 / self._peak if self._peak > 1.0 else 1.0
        final = temp_path(Path(self.dest))
        try:
            with sf.SoundFile(str(self._tmp)) as src, \
                    sf.SoundFile(str(final), "w", self.rate, self.channels, self.subtype,
                                 format=self.format) as dst:
                for data in src.blocks(BLOCK, dtype="float32", always_2d=True):
                    dst.write(np.clip(data * self.gain, -1.0, 1.0))
            os.replace(final, self._tmp)
        finally:
            final.unlink(missing_ok=True)

    def abort(self):
        if self._sf is not None:
            self._sf.close()
            self._sf = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
