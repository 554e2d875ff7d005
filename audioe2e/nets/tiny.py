"""Tiny causal enhancer: learnable butterfly-FFT front-end + small GRU mask estimator.

Why: RNNoise-class cost (≈ 80 k parameters, a few MMAC/s) with a transform that is learned
but stays O(n log n). Frames of n = 256 samples (16 ms) at hop 128 (8 ms): algorithmic
latency = one window = 16 ms. Streaming state: the last n − hop input samples, the GRU state
and the overlap-add tail, so `step` on chunks equals `step` on the whole signal.

`frontend` selects the ablation twins trained the same way: "butterfly" (learnable fast
transform), "fft" (fixed torch.fft), "dense" (learned n×n matrices, DFT-initialised).
The default enhancer is the same class at n 512 / hop 256 with the dense front-end and a
256-unit GRU (arch name "gru_enhancer", recipe `enhancer-gru`): one streaming code path.

`lookahead` L > 0 frames: the mask of frame t is estimated from frame t's features and frame
t+L's (concatenated at the GRU input), so the output waits L·hop samples more. The extra input
columns start at zero when warm-started from an L = 0 model (`train.loop.warm_start`), which
makes the starting point exactly that model, delayed.

`df_bins` B > 0 and `df_order` N add a deep filter (Schröter et al., DeepFilterNet, 2022) on
the lowest B bins: a complex N-tap filter over the current and N − 1 past frames of each bin,
added to the masked spectrum, Y[t, f] = m[t, f]·X[t, f] + Σ_i c_i[t, f]·X[t − i, f]. Why: a
real mask keeps the noisy phase and whatever lies between pitch harmonics inside a bin; a
filter across frames can use the harmonics' phase advance to remove it. The GRU then also sees
the compressed complex spectrum of those bins (its phase). The filter head and the new input
columns start at zero, so a warm start from a model without it begins as that model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..frontends.butterfly import ButterflyIRFFT, ButterflyRFFT
from ..frontends.stft import sqrt_hann


@dataclass(frozen=True)
class TinyConfig:
    arch: str = "tiny_enhancer"
    task: str = "enhance"
    sample_rate: int = 16000
    n_fft: int = 256
    hop: int = 128
    hidden: int = 64
    layers: int = 2
    frontend: str = "butterfly"  # butterfly | fft | dense
    compress: float = 0.3       # magnitude power-law compression of the features
    lookahead: int = 0          # frames of future context for each frame's mask
    df_bins: int = 0            # lowest bins that get the deep filter (0: mask only)
    df_order: int = 0           # deep filter taps: current frame + df_order − 1 past ones


class DenseDFT(nn.Module):
    """Dense learned transform pair initialised to the (i)rfft: the O(n²) baseline."""

    def __init__(self, n: int, inverse: bool):
        super().__init__()
        self.n, self.inverse = n, inverse
        eye = torch.eye(n, dtype=torch.float64)
        f = torch.fft.rfft(eye, dim=-1)  # [n, n/2+1]: row i = rfft(e_i)
        if not inverse:
            self.weight = nn.Parameter(torch.cat([f.real, f.imag], -1).float())  # [n, 2(n/2+1)]
        else:
            k = n // 2 + 1
            eye_k = torch.eye(k, dtype=torch.complex128)
            re = torch.fft.irfft(eye_k, n=n, dim=-1)
            im = torch.fft.irfft(1j * eye_k, n=n, dim=-1)
            self.weight = nn.Parameter(torch.cat([re, im], 0).float())  # [2k, n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.inverse:
            y = x @ self.weight
            k = self.n // 2 + 1
            return torch.complex(y[..., :k], y[..., k:])
        return torch.cat([x.real, x.imag], -1) @ self.weight


class FixedFFT(nn.Module):
    def __init__(self, n: int, inverse: bool):
        super().__init__()
        self.n, self.inverse = n, inverse

    def forward(self, x):
        return torch.fft.irfft(x, n=self.n) if self.inverse else torch.fft.rfft(x)


def make_transform(kind: str, n: int, inverse: bool) -> nn.Module:
    if kind == "butterfly":
        return ButterflyIRFFT(n) if inverse else ButterflyRFFT(n)
    if kind == "dense":
        return DenseDFT(n, inverse)
    if kind == "fft":
        return FixedFFT(n, inverse)
    raise ValueError(f"unknown front-end {kind!r}")


def overlap_add(frames: torch.Tensor, tail: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [B, k, n] at `hop`, plus the previous call's tail [B, n − hop] → (the k·hop
    samples that are complete, the new tail)."""
    b, k, n = frames.shape
    total = (k - 1) * hop + n
    ola = nn.functional.fold(frames.transpose(1, 2), (1, total), (1, n), stride=(1, hop)).view(b, total)
    ola = torch.cat([ola[:, : n - hop] + tail, ola[:, n - hop:]], -1)
    return ola[:, : k * hop], ola[:, k * hop:]


class TinyEnhancer(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.task = cfg.sample_rate, cfg.task
        self.n, self.hop = cfg.n_fft, cfg.hop
        bins = cfg.n_fft // 2 + 1
        self.analysis = make_transform(cfg.frontend, cfg.n_fft, inverse=False)
        self.synthesis = make_transform(cfg.frontend, cfg.n_fft, inverse=True)
        self.win_a = nn.Parameter(sqrt_hann(cfg.n_fft).float())
        self.win_s = nn.Parameter(sqrt_hann(cfg.n_fft).float())
        self.look = int(cfg.lookahead)
        self.df = int(cfg.df_bins)
        self.df_order = int(cfg.df_order) if self.df else 0
        if self.df and not (0 < self.df <= bins and self.df_order >= 1):
            raise ValueError(f"deep filter needs 0 < df_bins <= {bins} and df_order >= 1")
        self.past = max(self.df_order - 1, 0)  # past frames the deep filter reads
        feat_width = bins + 2 * self.df
        self.inp = nn.Linear(feat_width * (2 if self.look else 1), cfg.hidden)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, bins)
        if self.df:
            self.df_out = nn.Linear(cfg.hidden, self.df_order * self.df * 2)
            nn.init.zeros_(self.df_out.weight)
            nn.init.zeros_(self.df_out.bias)
        self.use_fast = True  # set False to force the reference path
        self._fast = None

    @classmethod
    def from_config(cls, config: dict) -> "TinyEnhancer":
        return cls(TinyConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @property
    def delay(self) -> int:
        """Output lags input by n − hop samples inside `step` (the overlap-add tail), plus
        the lookahead frames."""
        return self.n - self.hop + self.look * self.hop

    @property
    def latency(self) -> int:
        """Algorithmic latency: one full window (n samples), plus the lookahead frames,
        must arrive per output hop."""
        return self.n + self.look * self.hop

    def initial_state(self, batch: int, device=None):
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        return (z(batch, self.n - self.hop + (self.look + self.past) * self.hop),
                z(self.cfg.layers, batch, self.cfg.hidden), z(batch, self.n - self.hop))

    def step(self, x: torch.Tensor, state=None):
        """x [B, k·hop] → (y [B, k·hop] delayed by `delay`, new state).

        CPU inference without gradients takes the fast path (`tiny_fast`, through the numpy
        engine: same weights, same function to float rounding, ~3× faster); everything else
        runs `reference_step`."""
        if self._fast_ok(x):
            if self._fast is None:
                from .tiny_fast import FastTinyStep
                self._fast = FastTinyStep(self)
            return self._fast(x, state)
        return self.reference_step(x, state)

    def _fast_ok(self, x: torch.Tensor) -> bool:
        if self.training or torch.is_grad_enabled() or x.device.type != "cpu" or not self.use_fast:
            return False
        from . import tiny_numpy
        return x.dtype == torch.float32 and tiny_numpy.available() and tiny_numpy.supports(self.config_dict())

    def reference_step(self, x: torch.Tensor, state=None):
        """The model as trained: the O(n log n) butterfly stages and torch's GRU."""
        b = x.shape[0]
        prev_in, h, tail = state if state is not None else self.initial_state(b, x.device)
        buf = torch.cat([prev_in, x], -1)
        frames = buf.unfold(-1, self.n, self.hop) * self.win_a  # [B, past + k + look, n]
        spec_all = self.analysis(frames)  # [B, past + k + look, bins] complex
        spec = spec_all[:, self.past:]
        mag = spec.abs() + 1e-8
        feat = mag.pow(self.cfg.compress)
        if self.df:  # compressed complex spectrum of the filtered bins: their phase
            cplx = spec[..., : self.df] * mag[..., : self.df].pow(self.cfg.compress - 1)
            feat = torch.cat([feat, cplx.real, cplx.imag], -1)
        k = feat.shape[1] - self.look
        if self.look:  # frame t sees frame t + look; the last `look` frames wait for the next call
            feat = torch.cat([feat[:, :k], feat[:, self.look:]], -1)
            spec = spec[:, :k]
        hidden, h = self.gru(torch.relu(self.inp(feat)), h)
        mask = torch.sigmoid(self.out(hidden))
        est = spec * mask
        if self.df:
            est = torch.cat([est[..., : self.df] + self._deep_filter(hidden, spec_all, k), est[..., self.df:]], -1)
        out_frames = self.synthesis(est) * self.win_s  # [B, k, n]
        y, tail = overlap_add(out_frames, tail, self.hop)
        return y, (buf[:, buf.shape[-1] - prev_in.shape[-1]:], h, tail)

    def _deep_filter(self, hidden: torch.Tensor, spec_all: torch.Tensor, k: int) -> torch.Tensor:
        """Σ_i c_i[t, f]·X[t − i, f] on the lowest `df` bins of the k output frames."""
        b = hidden.shape[0]
        c = self.df_out(hidden).view(b, k, self.df_order, self.df, 2)
        c = torch.complex(c[..., 0], c[..., 1])
        taps = [spec_all[:, self.past - i: self.past - i + k, : self.df] for i in range(self.df_order)]
        return (c * torch.stack(taps, 2)).sum(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-signal enhancement, time-aligned: x [B, T] → [B, T]."""
        t = x.shape[-1]
        pad = (-(t + self.delay)) % self.hop + self.delay
        y, _ = self.step(nn.functional.pad(x, (0, pad)))
        return y[:, self.delay: self.delay + t]

    def make_streamer(self, device="cpu", atten_lim_db=None, wet=None):
        from ..streaming import DryWetStreamer, StatefulStreamer

        s = StatefulStreamer(self, device)
        if atten_lim_db is not None or wet is not None:
            s = DryWetStreamer(s, wet=1.0 if wet is None else wet, atten_lim_db=atten_lim_db)
        return s
