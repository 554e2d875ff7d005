"""WAV through pipes: an incremental RIFF/WAVE parser for non-seekable stdin, and a writer
that puts an "unknown length" header on stdout.

Why: soundfile needs to seek (to read the header of a pipe lazily and to patch sizes when
writing), so a pipe must be handled by hand to stream for real (DESIGN §1). Like sox and
ffmpeg, the output header says 0xFFFFFFFF for the RIFF and data sizes; readers (libsndfile,
ours) then read until EOF. On input, a data size of 0 or 0xFFFFFFFF means "until EOF", and a
stream that ends before its declared size is accepted with what arrived (sox writes a large
placeholder size into pipes).

Accepted: WAVE_FORMAT_PCM (8/16/24/32 bit), WAVE_FORMAT_IEEE_FLOAT (32/64 bit) and
WAVE_FORMAT_EXTENSIBLE wrapping either; RIFF only (no RIFX/RF64 from a pipe).
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator, Optional

import numpy as np

from .audio import AudioError, AudioInfo

UNKNOWN = 0xFFFFFFFF
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_SUBTYPES = {(_PCM, 8): "PCM_U8", (_PCM, 16): "PCM_16", (_PCM, 24): "PCM_24",
             (_PCM, 32): "PCM_32", (_FLOAT, 32): "FLOAT", (_FLOAT, 64): "DOUBLE"}
_BITS = {"PCM_16": (16, _PCM), "PCM_24": (24, _PCM), "PCM_32": (32, _PCM), "FLOAT": (32, _FLOAT)}
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def decode_frames(buf: bytes, subtype: str, channels: int) -> np.ndarray:
    """Little-endian interleaved bytes (whole frames) -> float32 `[C, T]` (libsndfile scaling)."""
    if subtype == "PCM_16":
        x = np.frombuffer(buf, "<i2").astype(np.float32) / 32768.0
    elif subtype == "PCM_24":
        b = np.frombuffer(buf, np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)  # sign lands in bit 31
        x = (v >> 8).astype(np.float32) / 8388608.0
    elif subtype == "PCM_32":
        x = (np.frombuffer(buf, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif subtype == "PCM_U8":
        x = (np.frombuffer(buf, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif subtype == "FLOAT":
        x = np.frombuffer(buf, "<f4").astype(np.float32)
    elif subtype == "DOUBLE":
        x = np.frombuffer(buf, "<f8").astype(np.float32)
    else:
        raise AudioError(f"unsupported WAV subtype {subtype}")
    return np.ascontiguousarray(x.reshape(-1, channels).T)


def encode_frames(x: np.ndarray, subtype: str) -> bytes:
    """float32 `[C, T]` -> little-endian interleaved bytes; integers are clamped and rounded
    like libsndfile (scale 2^(bits-1)), so PCM input goes through unchanged."""
    x = np.asarray(x, np.float32).T
    if subtype == "FLOAT":
        return np.ascontiguousarray(x, "<f4").tobytes()
    bits = _BITS[subtype][0]
    scale = float(1 << (bits - 1))
    v = np.clip(np.rint(x.astype(np.float64) * scale), -scale, scale - 1).astype(np.int64)
    if subtype == "PCM_16":
        return v.astype("<i2").tobytes()
    if subtype == "PCM_32":
        return v.astype("<i4").tobytes()
    v = v.astype("<i4").reshape(-1, 1).view(np.uint8)  # PCM_24: low 3 bytes of each int32
    return np.ascontiguousarray(v[:, :3]).tobytes()


def wav_header(rate: int, channels: int, subtype: str) -> bytes:
    """A WAV header with unknown (0xFFFFFFFF) RIFF and data sizes; EXTENSIBLE above 2 channels."""
    bits, tag = _BITS[subtype]
    align = channels * bits // 8
    if channels > 2:
        mask = (1 << channels) - 1 if channels <= 18 else 0
        fmt = struct.pack("<HHIIHHHHI", _EXTENSIBLE, channels, rate, rate * align, align, bits,
                          22, bits, mask) + struct.pack("<H", tag) + _GUID_TAIL
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    return (b"RIFF" + struct.pack("<I", UNKNOWN) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", UNKNOWN))


class WavPipeWriter:
    """Writes the streaming header at once, then frames as they come (flushed each time)."""

    def __init__(self, stream: BinaryIO, rate: int, channels: int, subtype: str):
        if subtype not in _BITS:
            raise AudioError(f"cannot stream subtype {subtype} (use PCM_16, PCM_24, PCM_32, FLOAT)")
        self.stream, self.subtype = stream, subtype
        self.stream.write(wav_header(rate, channels, subtype))
        self.stream.flush()

    def write(self, x: np.ndarray):
        self.stream.write(encode_frames(x, self.subtype))
        self.stream.flush()

    def flush(self):
        self.stream.flush()


class WavPipeReader:
    """Parses a RIFF/WAVE stream incrementally from a non-seekable binary stream."""

    def __init__(self, stream: BinaryIO, block: int = 16384):
        self.stream = stream
        self.block = block
        self._buf = b""
        self._eof = False
        self.info = self._parse_header()

    def _read(self, n: int) -> bytes:
        """Exactly n bytes unless EOF comes first."""
        while len(self._buf) < n and not self._eof:
            self._fill(max(n - len(self._buf), 65536))
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _fill(self, n: int):
        read1 = getattr(self.stream, "read1", self.stream.read)
        data = read1(n)
        if not data:
            self._eof = True
        self._buf += data

    def _skip(self, n: int):
        while n > 0:
            got = self._read(min(n, 1 << 20))
            if not got:
                return
            n -= len(got)

    def _parse_header(self) -> AudioInfo:
        head = self._read(12)
        if len(head) == 0:
            raise AudioError("empty input (zero-length audio)")
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
            raise AudioError("not a WAV stream (only WAV can be read from a pipe; "
                             "redirect a file with '<' for other formats)")
        if head[:4] != b"RIFF":
            raise AudioError(f"unsupported format: {head[:4].decode()} WAV from a pipe")
        fmt = None
        while True:
            ch = self._read(8)
            if len(ch) < 8:
                raise AudioError("corrupt WAV: no data chunk" if fmt else "corrupt WAV: no fmt chunk")
            cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                if not 16 <= size <= 4096:
                    raise AudioError("corrupt WAV: bad fmt chunk")
                fmt = self._read(size + (size & 1))[:size]
                if len(fmt) < size:
                    raise AudioError("corrupt WAV: truncated fmt chunk")
            elif cid == b"data":
                if fmt is None:
                    raise AudioError("corrupt WAV: data before fmt chunk")
                return self._make_info(fmt, size)
            else:
                self._skip(size + (size & 1))

    def _make_info(self, fmt: bytes, size: int) -> AudioInfo:
        tag, ch, rate, _, align, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == _EXTENSIBLE:
            if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
                raise AudioError("unsupported WAV: unknown EXTENSIBLE sub-format")
            tag = struct.unpack("<H", fmt[24:26])[0]
        subtype = _SUBTYPES.get((tag, bits))
        if subtype is None:
            raise AudioError(f"unsupported WAV encoding (format tag {tag:#x}, {bits} bit)")
        if ch < 1 or rate < 1 or align != ch * bits // 8:
            raise AudioError("corrupt WAV: inconsistent fmt chunk")
        self._align, self._ch, self._subtype = align, ch, subtype
        self._left: Optional[int] = None if size in (0, UNKNOWN) else size
        frames = None if self._left is None else self._left // align
        return AudioInfo(rate, ch, subtype, frames, "WAV")

    def blocks(self) -> Iterator[np.ndarray]:
        want = self.block * self._align
        while self._left is None or self._left > 0:
            if len(self._buf) < self._align and not self._eof:
                self._fill(want if self._left is None else min(want, self._left))
            take = len(self._buf) if self._left is None else min(len(self._buf), self._left)
            take = min(take, want) // self._align * self._align
            if take == 0:
                if self._eof:
                    return
                continue
            data, self._buf = self._buf[:take], self._buf[take:]
            if self._left is not None:
                self._left -= take
            yield decode_frames(data, self._subtype, self._ch)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
