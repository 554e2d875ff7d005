"""Streaming engine: the `Streamer` protocol and the drivers that turn a model into one.

Why: every command must keep memory flat in file length and give output that does not depend
on how the input was cut into blocks. Models stay stateless `nn.Module`s; the state needed to
process a stream (history, recurrent state, overlap tails) lives in a streamer around them.

Contract of every streamer (what the API layer relies on):
- `feed(x)` takes a block `[C, T]` (float32, model rate; C channels processed as a batch) and
  returns whatever output is ready: `[C, T']` for enhancers, `[C, S, T']` for separators.
- `flush()` returns the rest. The outputs of all calls, concatenated, have exactly as many
  samples as the whole input and are time-aligned with it (each streamer hides its own delay).
- `latency` is the algorithmic delay in samples (how much input must arrive before the
  output for a given sample can be produced), reported by `audioe2e models`.
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol

import torch

from .mixback import floor_gain, mix_back


class Streamer(Protocol):
    latency: int

    def feed(self, x: torch.Tensor) -> torch.Tensor: ...

    def flush(self) -> torch.Tensor: ...


class StatefulStreamer:
    """Drives a causal model that carries explicit state across calls.

    The model exposes `step(x, state) -> (y, state)` on inputs whose length is a multiple of
    `model.hop`, with output lagging input by `model.delay` samples (`delay` < inputs fed so
    far produce zeros first). Whole-file inference is the same code with one big call, so
    chunked and whole-file output are identical up to float rounding.
    """

    def __init__(self, model, device: torch.device | str = "cpu"):
        self.model = model
        self.device = torch.device(device)
        self.hop = int(model.hop)
        self.delay = int(model.delay)
        self.latency = int(model.latency)
        self.state = None
        self.pending: Optional[torch.Tensor] = None  # input samples not yet a whole hop
        self.to_drop = self.delay  # leading output samples that only reflect the zero state
        self.n_in = 0
        self.n_out = 0

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.pending is not None:
            x = torch.cat([self.pending, x], dim=-1)
        usable = (x.shape[-1] // self.hop) * self.hop
        self.pending = x[..., usable:]
        if usable == 0:
            return x[..., :0]
        with torch.inference_mode():
            y, self.state = self.model.step(x[..., :usable].to(self.device), self.state)
        y = y.cpu()
        if self.to_drop:
            k = min(self.to_drop, y.shape[-1])
            y = y[..., k:]
            self.to_drop -= k
        return y

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self.n_in += x.shape[-1]
        y = self._run(x)
        self.n_out += y.shape[-1]
        return y

    def flush(self) -> torch.Tensor:
        missing = self.n_in - self.n_out
        if missing <= 0:
            return self._empty()
        pad_len = missing + self.hop  # enough zeros to push every real sample out
        pad = torch.zeros(*self.pending.shape[:-1], pad_len) if self.pending is not None else None
        y = self._run(pad) if pad is not None else self._empty()
        y = y[..., :missing]
        self.n_out += y.shape[-1]
        return y

    def _empty(self) -> torch.Tensor:
        shape = (self.pending.shape[:-1] if self.pending is not None else (0,))
        return torch.zeros(*shape, 0)


def crossfade_window(overlap: int) -> torch.Tensor:
    """Rising half of a Hann window: fades chunk k+1 in while chunk k fades out (sum = 1)."""
    if overlap == 0:
        return torch.ones(0)
    n = torch.arange(overlap, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(torch.pi * (n + 0.5) / overlap)).float()


class OverlapAddStreamer:
    """Runs a non-causal model on fixed windows of `chunk` samples that overlap by `overlap`.

    Window positions depend only on the absolute sample index, never on how the caller
    blocks the input, so the output is independent of the I/O block size. Consecutive
    windows are cross-faded on the overlap. For separators, `align(prev_tail, cur_head)` may
    return a permutation of the speakers of the current window so that speaker k stays
    speaker k across windows (DESIGN §1).

    `model_fn(x [C, T]) -> y [C, (S,) T]`. Latency = `chunk` samples.
    """

    def __init__(self, model_fn: Callable[[torch.Tensor], torch.Tensor], chunk: int, overlap: int,
                 align: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None):
        if not 0 <= overlap < chunk:
            raise ValueError(f"overlap ({overlap}) must be in [0, chunk={chunk})")
        self.model_fn = model_fn
        self.chunk, self.overlap, self.step = chunk, overlap, chunk - overlap
        self.align = align
        self.latency = chunk
        self.fade = crossfade_window(overlap)
        self.buf: Optional[torch.Tensor] = None  # input from the start of the next window
        self.tail: Optional[torch.Tensor] = None  # previous window's output on the overlap
        self.n_in = 0
        self.n_out = 0

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            y = self.model_fn(x)
        if self.tail is not None and self.overlap:
            head = y[..., : self.overlap]
            if self.align is not None and y.dim() == 3:
                perm = self.align(self.tail, head)  # [C, S] index per channel
                y = torch.stack([y[c, perm[c]] for c in range(y.shape[0])])
                head = y[..., : self.overlap]
            y = y.clone()
            y[..., : self.overlap] = self.tail * (1 - self.fade) + head * self.fade
        out = y[..., : self.step]
        self.tail = y[..., self.step:] if self.overlap else None
        return out

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self.n_in += x.shape[-1]
        self.buf = x if self.buf is None else torch.cat([self.buf, x], dim=-1)
        outs = []
        while self.buf.shape[-1] >= self.chunk:
            outs.append(self._window(self.buf[..., : self.chunk]))
            self.buf = self.buf[..., self.step:]
        y = self._cat(outs)
        self.n_out += y.shape[-1]
        return y

    def flush(self) -> torch.Tensor:
        missing = self.n_in - self.n_out
        outs = []
        if self.buf is not None and missing > 0:
            # Pad the last (partial) window with zeros so it has the fixed window length.
            while self.n_out + sum(o.shape[-1] for o in outs) < self.n_in:
                pad = self.chunk - self.buf.shape[-1]
                if pad > 0:
                    self.buf = torch.cat([self.buf, self.buf.new_zeros(*self.buf.shape[:-1], pad)], -1)
                outs.append(self._window(self.buf[..., : self.chunk]))
                self.buf = self.buf[..., self.step:]
        y = self._cat(outs)
        y = y[..., : max(missing, 0)]
        self.n_out += y.shape[-1]
        return y

    @staticmethod
    def _cat(outs):
        # Nothing ready yet: a zero-length tensor (callers test `y.shape[-1] == 0`).
        return torch.cat(outs, dim=-1) if outs else torch.zeros(0)


def align_sources(prev_tail: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Speaker order for the new window: the permutation of `head` [C, S, O] that best
    matches `prev_tail` [C, S, O] (same samples, previous window) by correlation.
    Returns [C, S] indices. Exhaustive over S! permutations (S is 2 or 3 here)."""
    from itertools import permutations

    c, s, _ = head.shape
    a = prev_tail / (prev_tail.norm(dim=-1, keepdim=True) + 1e-8)
    b = head / (head.norm(dim=-1, keepdim=True) + 1e-8)
    sim = torch.einsum("csn,ctn->cst", a, b)  # [C, S_prev, S_new]
    perms = [list(p) for p in permutations(range(s))]
    best = []
    for ch in range(c):
        scores = [sum(sim[ch, i, p[i]] for i in range(s)) for p in perms]
        best.append(perms[int(torch.tensor(scores).argmax())])
    return torch.tensor(best, dtype=torch.long)


class DryWetStreamer:
    """Mixes the noisy input back into an enhancer's output (formula: `mixback.mix_back`).
    Inner outputs are time-aligned with the input but arrive later, so the input is kept in a
    FIFO until its output is there."""

    def __init__(self, inner, wet: float = 1.0, atten_lim_db: float | None = None):
        if not 0.0 <= wet <= 1.0:
            raise ValueError(f"wet/dry mix must be in [0, 1], got {wet}")
        self.inner, self.latency = inner, inner.latency
        self.g, self.wet = floor_gain(atten_lim_db), wet
        self.fifo: torch.Tensor | None = None

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        n = y.shape[-1]
        if n == 0:
            return y
        x, self.fifo = self.fifo[..., :n], self.fifo[..., n:]
        return mix_back(y, x, self.g, self.wet)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self.fifo = x if self.fifo is None else torch.cat([self.fifo, x], -1)
        return self._mix(self.inner.feed(x))

    def flush(self) -> torch.Tensor:
        return self._mix(self.inner.flush())


class ContextStreamer:
    """Streams a causal network with a finite receptive field by recomputation.

    `fn` maps `[..., (context + n)·unit_in]` → `[..., (context + n)·unit_out]`; each call runs
    it on the last `context` input units (zeros at the start) plus the new whole units and
    keeps the outputs of the new units. Equal to one whole-signal run that starts with
    `context` zero units, provided the receptive field fits in `context` units (the codec
    defines its whole-signal paths that way). `pad_last`: flush zero-pads a final partial
    unit (encoder); otherwise leftover input is an error.
    Used for the codec, whose encoder maps samples → code frames and decoder latents →
    samples, so `unit_in`/`unit_out` differ."""

    def __init__(self, fn, unit_in: int, unit_out: int, context: int, pad_last: bool = False):
        self.fn, self.unit_in, self.unit_out, self.context = fn, unit_in, unit_out, context
        self.pad_last = pad_last
        self.latency = unit_in
        self.ctx: Optional[torch.Tensor] = None
        self.pending: Optional[torch.Tensor] = None

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.ctx is None:
            self.ctx = x.new_zeros(*x.shape[:-1], self.context * self.unit_in)
        window = torch.cat([self.ctx, x], -1)
        with torch.inference_mode():
            y = self.fn(window)
        self.ctx = window[..., window.shape[-1] - self.context * self.unit_in:]
        return y[..., self.context * self.unit_out:]

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.pending is None else torch.cat([self.pending, x], -1)
        n = (x.shape[-1] // self.unit_in) * self.unit_in
        self.pending = x[..., n:]
        if n == 0:
            return torch.zeros(0)
        return self._run(x[..., :n])

    def flush(self) -> torch.Tensor:
        if self.pending is None or self.pending.shape[-1] == 0:
            return torch.zeros(0)
        if not self.pad_last:
            raise ValueError("stream ended inside a unit")
        pad = self.unit_in - self.pending.shape[-1]
        x = torch.cat([self.pending, self.pending.new_zeros(*self.pending.shape[:-1], pad)], -1)
        self.pending = None
        return self._run(x)
