"""Streaming resampling and exact-length bookkeeping.

Why: any input rate must work (DESIGN §1), so audio is resampled to the model rate and back,
block by block, with a real resampler. `soxr.ResampleStream` keeps its filter state between
calls and its output is already delay-compensated (an impulse at input sample n comes out at
n * out_rate / in_rate; tested), so concatenated outputs are aligned with the input and total
round(n * out_rate / in_rate) samples after `last=True`. The remaining ±1-sample rounding of
an up-and-down trip is absorbed by `ExactLength`, which makes the output exactly as long as
the input: it never emits more than the caller allows and trims or zero-pads at the end.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


class Resampler:
    """`[C, T]` float32 at `in_rate` -> `[C, T']` at `out_rate`; identity when rates match."""

    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "HQ"):
        self.in_rate, self.out_rate, self.channels = int(in_rate), int(out_rate), int(channels)
        self.identity = self.in_rate == self.out_rate
        self._rs = None
        if not self.identity:
            import soxr

            self._rs = soxr.ResampleStream(self.in_rate, self.out_rate, self.channels,
                                           dtype="float32", quality=quality)

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.identity or x.shape[-1] == 0:
            return x
        y = self._rs.resample_chunk(np.ascontiguousarray(x.T, dtype=np.float32))
        return np.ascontiguousarray(y.T)

    def flush(self) -> np.ndarray:
        """The resampler's tail; call once at the end of the stream."""
        if self.identity:
            return np.zeros((self.channels, 0), np.float32)
        y = self._rs.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
        return np.ascontiguousarray(y.T)


class ExactLength:
    """Passes blocks through so that the final total is exactly the input length.

    `push(y, limit)` emits at most up to `limit` samples in total (the number of input samples
    seen so far: output never runs ahead of input). With `limit=None` it holds back the last
    `holdback` samples instead (when the true length is only known at the end, e.g. decoding).
    `finish(total)` returns the rest, trimmed or zero-padded to reach `total`.
    """

    def __init__(self, channels: int, holdback: int = 0):
        self.buf = np.zeros((channels, 0), np.float32)
        self.holdback = holdback
        self.emitted = 0

    def push(self, y: np.ndarray, limit: Optional[int] = None) -> np.ndarray:
        if y.shape[-1]:
            self.buf = np.concatenate([self.buf, y.astype(np.float32, copy=False)], axis=-1)
        if limit is None:
            n = max(0, self.buf.shape[-1] - self.holdback)
        else:
            n = max(0, min(self.buf.shape[-1], limit - self.emitted))
        out, self.buf = self.buf[:, :n], self.buf[:, n:]
        self.emitted += n
        return out

    def finish(self, total: int) -> np.ndarray:
        need = max(0, total - self.emitted)
        out = self.buf[:, :need]
        if out.shape[-1] < need:
            pad = np.zeros((out.shape[0], need - out.shape[-1]), np.float32)
            out = np.concatenate([out, pad], axis=-1)
        self.buf = self.buf[:, :0]
        self.emitted += need
        return out
