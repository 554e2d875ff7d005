"""Torch-free CPU inference for both enhancers (the `TinyEnhancer` class): numpy + a C GRU loop.

Why: `import torch` alone costs ~2 s per process, about as long as the tiny model needs to
enhance a whole 10-minute file, so for `enhance` on a CPU the framework, not the model, set
the wall time. This module computes the same function as `TinyEnhancer.step` (equal to float
rounding, tested) from the same shipped weights file, read with `safetensors.numpy`:
- butterfly front-end (tiny): the learned butterflies in their two-factor form
  (`Butterfly.two_factor_blocks`, rebuilt here from the twiddles), with the learned windows,
  the Hermitian extension and the "keep n/2+1 bins" / "keep the real part" steps folded into
  the factors; each factor is one batched matmul (`tiny_fast` lets the torch model use this
  engine for CPU inference too);
- dense front-end (default enhancer): the learned transform pair, one matmul each way;
- the GRU recurrence in the compiled loop of `gru_kernel` (no numpy fallback: where the
  extension was not built, callers use the torch model instead).
Training, the fixed-FFT ablation twin and GPUs keep using `TinyEnhancer`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..mixback import floor_gain, mix_back
from . import gru_kernel


ARCHS = ("tiny_enhancer", "gru_enhancer")  # one class: the default enhancer is the tiny's sibling


def bit_reversal(n: int) -> np.ndarray:
    """`butterfly.bit_reversal_permutation` in numpy: viewing 0..n−1 as [2]*bits (one axis per
    bit, most significant first) and reversing the axes reverses every index's bits."""
    bits = int(math.log2(n))
    return np.arange(n).reshape([2] * bits).transpose().ravel()


def _butterfly_stages(tw: np.ndarray, x: np.ndarray, first: int, last: int) -> np.ndarray:
    """Stages first..last−1 of `Butterfly.factorised` (no permutation) on the rows of x."""
    n = x.shape[-1]
    lead = x.shape[:-1]
    for s in range(first, last):
        half = 2 ** s
        v = x.reshape(*lead, n // (2 * half), 2, half)
        top, bot = v[..., 0, :], v[..., 1, :]
        t = tw[s].reshape(n // (2 * half), half, 2, 2)
        x = np.stack([t[..., 0, 0] * top + t[..., 0, 1] * bot,
                      t[..., 1, 0] * top + t[..., 1, 1] * bot], -2).reshape(*lead, n)
    return x


def two_factor_blocks(twiddles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`Butterfly.two_factor_blocks` from the stored twiddles [stages, n/2, 2, 2, 2(re, im)]:
    (first [G, b, b], second [b, G, G]) complex, b = 2^(stages // 2), G = n / b."""
    tw = twiddles[..., 0].astype(np.float64) + 1j * twiddles[..., 1].astype(np.float64)
    stages = tw.shape[0]
    n, g = 2 ** stages, stages // 2
    b, groups = 2 ** g, n // 2 ** g
    eye = np.eye(n, dtype=np.complex128)
    m1 = _butterfly_stages(tw, eye, 0, g)
    m2 = _butterfly_stages(tw, eye, g, stages)
    first = np.stack([m1[q * b:(q + 1) * b, q * b:(q + 1) * b] for q in range(groups)])
    second = np.stack([m2[r::b, r::b] for r in range(b)])
    return first, second


def _real_form(c: np.ndarray) -> np.ndarray:
    """Complex [..., i, o] → real [..., 2, i, 2, o] acting on stacked (re, im) inputs."""
    top = np.stack([c.real, c.imag], -2)
    bottom = np.stack([-c.imag, c.real], -2)
    return np.stack([top, bottom], -4)


def overlap_add(frames: np.ndarray, tail: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """frames [B, k, n] at `hop` (n a multiple of hop) plus the previous tail [B, n − hop] →
    (the k·hop complete samples, the new tail); `tiny.overlap_add` without torch."""
    b, k, n = frames.shape
    ola = np.zeros((b, (k - 1) * hop + n), np.float32)
    for j in range(n // hop):  # segment j of frame i lands at (i + j)·hop
        ola[:, j * hop: j * hop + k * hop] += frames[:, :, j * hop:(j + 1) * hop].reshape(b, k * hop)
    ola[:, : n - hop] += tail
    return ola[:, : k * hop], ola[:, k * hop:].copy()


class NumpyTinyEnhancer:
    """`TinyEnhancer.step` on numpy arrays, built from its state dict and config."""

    n_sources = 1
    engine = "numpy"  # named in `--json` reports (`api.stamp`)

    def __init__(self, state: dict[str, np.ndarray], config: dict):
        if not supports(config):
            raise ValueError(f"the numpy engine does not run arch {config.get('arch')!r} with "
                             f"front-end {config.get('frontend')!r}")
        self.config = config
        self.sample_rate = int(config["sample_rate"])
        self.n, self.hop = int(config["n_fft"]), int(config["hop"])
        self.hidden, self.layers = int(config["hidden"]), int(config["layers"])
        self.compress = float(config["compress"])
        if self.n % self.hop:
            raise ValueError("the numpy engine needs n_fft to be a multiple of hop")
        self.look = int(config.get("lookahead", 0))  # frames of future context (tiny.py)
        self.df = int(config.get("df_bins", 0))  # deep filter (tiny.py): bins, taps
        self.df_order = int(config.get("df_order", 0)) if self.df else 0
        self.past = max(self.df_order - 1, 0)
        self.delay = self.n - self.hop + self.look * self.hop
        self.latency = self.n + self.look * self.hop
        f32 = lambda k: np.ascontiguousarray(state[k], dtype=np.float32)  # noqa: E731
        self._mask_net(f32)
        if config["frontend"] == "dense":
            self.win_a, self.win_s = f32("win_a"), f32("win_s")
            self.w_a, self.w_s = f32("analysis.weight"), f32("synthesis.weight")
            self.analysis, self.synthesis = self._dense_analysis, self._dense_synthesis
        else:
            self._fold_butterflies(state, f32)

    def _mask_net(self, f32) -> None:
        self.inp_w_t, self.inp_b = f32("inp.weight").T.copy(), f32("inp.bias")
        self.out_w_t, self.out_b = f32("out.weight").T.copy(), f32("out.bias")
        self.w_ih_t = [f32(f"gru.weight_ih_l{i}").T.copy() for i in range(self.layers)]
        self.b_ih = [f32(f"gru.bias_ih_l{i}") for i in range(self.layers)]
        self.w_hh_t = [f32(f"gru.weight_hh_l{i}").T.copy() for i in range(self.layers)]
        self.b_hh = [f32(f"gru.bias_hh_l{i}") for i in range(self.layers)]
        if self.df:
            self.df_w_t, self.df_b = f32("df_out.weight").T.copy(), f32("df_out.bias")

    def _dense_analysis(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = (frames * self.win_a) @ self.w_a  # [F, 2(n/2+1)]: (re | im)
        k = self.n // 2 + 1
        return y[:, :k], y[:, k:]

    def _dense_synthesis(self, re: np.ndarray, im: np.ndarray) -> np.ndarray:
        return (np.concatenate([re, im], -1) @ self.w_s) * self.win_s

    def _fold_butterflies(self, state, f32) -> None:
        n, bins = self.n, self.n // 2 + 1
        # Analysis: frame[perm] · win_a[perm] in groups of b → first factor → second factor.
        first, second = two_factor_blocks(state["analysis.fly.twiddles"])
        groups, b = first.shape[0], first.shape[1]
        self.groups, self.b, self.perm = groups, b, bit_reversal(n)
        self.keep = -(-bins // b)
        win_a = f32("win_a")[self.perm].reshape(groups, b, 1)
        a1 = _real_form(first * win_a)[:, 0]  # [G, b_in, 2, b_out]: real input rows only
        self.a1 = a1.reshape(groups, b, 2 * b).astype(np.float32)
        a2 = _real_form(second[:, :, : self.keep])  # [b, 2(c), G(q), 2(d), keep]
        self.a2 = a2.reshape(b, 2 * groups, 2 * self.keep).astype(np.float32)
        # Synthesis: Hermitian extension + bit reversal as a gather with signs on imag.
        first_s, second_s = two_factor_blocks(state["synthesis.fly.twiddles"])
        j = bit_reversal(n)
        self.s_bin = np.where(j <= n // 2, j, n - j)
        sign = np.where((j == 0) | (j == n // 2), 0.0, np.where(j < n // 2, 1.0, -1.0))
        self.s_sign = sign.astype(np.float32).reshape(groups, b)
        self.s1 = _real_form(first_s).reshape(groups, 2 * b, 2 * b).astype(np.float32)
        s2 = _real_form(second_s)[:, :, :, 0]  # [b(r), 2(c), G(q), G(q')]: real part only
        win_s = f32("win_s").reshape(groups, b).T.reshape(b, 1, 1, groups)
        self.s2 = (s2 * win_s).reshape(b, 2 * groups, groups).astype(np.float32)
        self.analysis, self.synthesis = self._fly_analysis, self._fly_synthesis

    def _fly_analysis(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames [F, n] (unwindowed) → (re, im) [F, n/2+1]."""
        f, g, b = frames.shape[0], self.groups, self.b
        x = frames[:, self.perm].reshape(f, g, b).transpose(1, 0, 2)  # [G, F, b]
        y1 = np.matmul(x, self.a1).reshape(g, f, 2, b)  # [G(q), F, 2(c), b(r)]
        y1 = y1.transpose(3, 1, 2, 0).reshape(b, f, 2 * g)  # [b(r), F, (c, q)]
        y2 = np.matmul(y1, self.a2).reshape(b, f, 2, self.keep)  # [b(r), F, 2(d), keep(p)]
        y2 = y2.transpose(1, 2, 3, 0).reshape(f, 2, self.keep * b)[..., : self.n // 2 + 1]
        return y2[:, 0], y2[:, 1]

    def _fly_synthesis(self, re: np.ndarray, im: np.ndarray) -> np.ndarray:
        """(re, im) [F, n/2+1] → windowed output frames [F, n]."""
        f, g, b = re.shape[0], self.groups, self.b
        xr = re[:, self.s_bin].reshape(f, g, b)
        xi = im[:, self.s_bin].reshape(f, g, b) * self.s_sign
        x = np.stack([xr, xi], 2).transpose(1, 0, 2, 3).reshape(g, f, 2 * b)  # [G(q), F, (c, r)]
        y1 = np.matmul(x, self.s1).reshape(g, f, 2, b)  # [G(q), F, 2(d), b(s)]
        y1 = y1.transpose(3, 1, 2, 0).reshape(b, f, 2 * g)  # [b(s), F, (d, q)]
        y2 = np.matmul(y1, self.s2)  # [b(r), F, G(q')]
        return y2.transpose(1, 2, 0).reshape(f, self.n)

    def initial_state(self, batch: int):
        z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
        return (z(batch, self.n - self.hop + (self.look + self.past) * self.hop), z(self.layers, batch, self.hidden),
                z(batch, self.n - self.hop))

    def step(self, x: np.ndarray, state=None):
        """x [B, k·hop] float32 → (y [B, k·hop] delayed by `delay`, new state)."""
        n, hop = self.n, self.hop
        bsz = x.shape[0]
        prev_in, h, tail = state if state is not None else self.initial_state(bsz)
        buf = np.concatenate([prev_in, x.astype(np.float32, copy=False)], -1)
        frames_in = (buf.shape[-1] - n) // hop + 1  # past + k output frames + `look` ahead
        past, look = self.past, self.look
        k = frames_in - past - look
        idx = np.arange(frames_in)[:, None] * hop + np.arange(n)
        re_all, im_all = (a.reshape(bsz, frames_in, -1)
                          for a in self.analysis(buf[:, idx].reshape(bsz * frames_in, n)))
        re, im = re_all[:, past:], im_all[:, past:]  # [B, k + look, bins]
        mag = np.hypot(re, im) + np.float32(1e-8)
        feat = mag ** np.float32(self.compress)
        if self.df:  # compressed complex spectrum of the filtered bins (as TinyEnhancer)
            scale = mag[..., : self.df] ** np.float32(self.compress - 1)
            feat = np.concatenate([feat, re[..., : self.df] * scale, im[..., : self.df] * scale], -1)
        if look:  # frame t sees frame t + look (as TinyEnhancer.reference_step)
            feat = np.concatenate([feat[:, :k], feat[:, look:]], -1)
            re, im = re[:, :k], im[:, :k]
        z = np.maximum(feat.reshape(bsz * k, -1) @ self.inp_w_t + self.inp_b, 0).reshape(bsz, k, -1)
        h = h.copy()  # [layers, B, H]: each h[i] is updated in place by the C loop
        for i in range(self.layers):
            gi = np.ascontiguousarray(z @ self.w_ih_t[i] + self.b_ih[i], dtype=np.float32)
            z = gru_kernel.gru_layer(gi, h[i], self.w_hh_t[i], self.b_hh[i])
        logits = z.reshape(bsz * k, -1) @ self.out_w_t + self.out_b
        mask = (0.5 + 0.5 * np.tanh(0.5 * logits)).reshape(bsz, k, -1)  # sigmoid without exp overflow
        est_re, est_im = re * mask, im * mask
        if self.df:
            c = (z.reshape(bsz * k, -1) @ self.df_w_t + self.df_b).reshape(bsz, k, self.df_order, self.df, 2)
            for i in range(self.df_order):  # tap i reads frame t − i
                xr = re_all[:, past - i: past - i + k, : self.df]
                xi = im_all[:, past - i: past - i + k, : self.df]
                cr, ci = c[:, :, i, :, 0], c[:, :, i, :, 1]
                est_re[..., : self.df] += cr * xr - ci * xi
                est_im[..., : self.df] += cr * xi + ci * xr
        out = self.synthesis(est_re.reshape(bsz * k, -1).astype(np.float32),
                             est_im.reshape(bsz * k, -1).astype(np.float32))
        y, tail = overlap_add(out.reshape(bsz, k, n).astype(np.float32, copy=False), tail, hop)
        return y, (buf[:, buf.shape[-1] - prev_in.shape[-1]:].copy(), h, tail)

    def make_streamer(self, device: str = "cpu", atten_lim_db: Optional[float] = None,
                      wet: Optional[float] = None):
        return NumpyStreamer(self, 1.0 if wet is None else wet, atten_lim_db)


class NumpyStreamer:
    """`StatefulStreamer` (+ `DryWetStreamer` mixing) on numpy arrays [C, T]: whole hops go
    through `step`, the first `delay` output samples are dropped, `flush` pushes the rest out
    with zeros. Same outputs as the torch streamers (tested)."""

    numpy_io = True  # `api.stream_file` feeds numpy arrays, not tensors

    def __init__(self, model: NumpyTinyEnhancer, wet: float = 1.0, atten_lim_db: Optional[float] = None):
        if not 0.0 <= wet <= 1.0:
            raise ValueError(f"wet/dry mix must be in [0, 1], got {wet}")
        self.model, self.hop, self.latency = model, model.hop, model.latency
        self.state, self.pending = None, None
        self.to_drop, self.n_in, self.n_out = model.delay, 0, 0
        self.mixing = wet != 1.0 or atten_lim_db is not None
        self.g, self.wet = floor_gain(atten_lim_db), wet
        self.fifo: Optional[np.ndarray] = None  # inputs waiting for their (later) outputs

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.pending is not None:
            x = np.concatenate([self.pending, x], -1)
        usable = (x.shape[-1] // self.hop) * self.hop
        self.pending = x[..., usable:]
        if usable == 0:
            return x[..., :0]
        y, self.state = self.model.step(x[..., :usable], self.state)
        k = min(self.to_drop, y.shape[-1])
        self.to_drop -= k
        return y[..., k:]

    def _mix(self, y: np.ndarray) -> np.ndarray:
        if not self.mixing or y.shape[-1] == 0:
            return y
        x, self.fifo = self.fifo[..., : y.shape[-1]], self.fifo[..., y.shape[-1]:]
        return mix_back(y, x, self.g, self.wet)

    def feed(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.mixing:
            self.fifo = x if self.fifo is None else np.concatenate([self.fifo, x], -1)
        self.n_in += x.shape[-1]
        y = self._run(x)
        self.n_out += y.shape[-1]
        return self._mix(y)

    def flush(self) -> np.ndarray:
        missing = self.n_in - self.n_out
        if missing <= 0 or self.pending is None:
            rows = self.pending.shape[0] if self.pending is not None else 0
            return np.zeros((rows, 0), np.float32)
        y = self._run(np.zeros((self.pending.shape[0], missing + self.hop), np.float32))[..., :missing]
        self.n_out += y.shape[-1]
        return self._mix(y)


def supports(config: dict) -> bool:
    """Whether this engine runs the network a weights file's config describes."""
    return config.get("arch") in ARCHS and config.get("frontend") in ("butterfly", "dense")


def available() -> bool:
    """The engine needs the compiled GRU loop (built by every `pip install`)."""
    return gru_kernel.available()


def load(path: Path, expected_sha256: Optional[str] = None) -> NumpyTinyEnhancer:
    """Read an enhancer weights file without torch (sha256 checked as `load_weights` does)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from ..checkpoint import check_sha256

    check_sha256(path, expected_sha256)
    with safe_open(str(path), framework="np") as f:
        config = json.loads((f.metadata() or {}).get("config", "{}"))
    return NumpyTinyEnhancer(load_file(str(path)), config)
