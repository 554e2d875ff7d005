"""Mask-based separator / enhancer on a DFT-initialised conv front-end (Conv-TasNet family).

Why one class for both: the separator (2 sources) and the default enhancer (1 source) share
the front-end, the TCN masker and the overlap-add inference; only `n_src` and the training
data differ. `trainable_frontend=False` gives the fixed-STFT twin with an identical masker.

x [B, T] → front-end [B, N, F] → gLN → 1×1 to B ch → TCN → PReLU → 1×1 to n_src·N → sigmoid
masks → masked representations → synthesis → [B, n_src, T].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..frontends.learned import ConvFrontEnd
from .layers import TCN, GlobalLayerNorm


@dataclass(frozen=True)
class MaskNetConfig:
    arch: str = "masknet"
    task: str = "separate"  # or "enhance"
    sample_rate: int = 16000
    n_src: int = 2
    n_filters: int = 256
    kernel: int = 128
    bottleneck: int = 128
    hidden: int = 256
    layers: int = 7
    repeats: int = 2
    trainable_frontend: bool = True
    chunk_seconds: float = 4.0     # inference window (overlap-add)
    overlap_seconds: float = 1.0


class MaskNet(nn.Module):
    def __init__(self, cfg: MaskNetConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.task, self.n_src = cfg.sample_rate, cfg.task, cfg.n_src
        self.n_sources = cfg.n_src
        self.frontend = ConvFrontEnd(cfg.n_filters, cfg.kernel, trainable=cfg.trainable_frontend)
        self.norm = GlobalLayerNorm(cfg.n_filters)
        self.inp = nn.Conv1d(cfg.n_filters, cfg.bottleneck, 1)
        self.tcn = TCN(cfg.bottleneck, cfg.hidden, cfg.layers, cfg.repeats)
        self.out = nn.Sequential(nn.PReLU(), nn.Conv1d(cfg.bottleneck, cfg.n_src * cfg.n_filters, 1))

    @classmethod
    def from_config(cls, config: dict) -> "MaskNet":
        return cls(MaskNetConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @property
    def latency(self) -> int:
        return int(self.cfg.chunk_seconds * self.sample_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T] → [B, n_src, T] (separate) or [B, T] (enhance)."""
        b, t = x.shape
        z = self.frontend.analysis(x)  # [B, N, F]
        # Compress the dynamic range for the masker only (level-robust features).
        feat = torch.sign(z) * torch.log1p(z.abs() * 100.0)
        m = torch.sigmoid(self.out(self.tcn(self.inp(self.norm(feat)))))
        m = m.view(b, self.n_src, self.cfg.n_filters, -1)
        y = self.frontend.synthesis((m * z.unsqueeze(1)).flatten(0, 1), t)
        y = y.view(b, self.n_src, t)
        return y[:, 0] if self.task == "enhance" else y

    def make_streamer(self, device="cpu", atten_lim_db=None, wet=None, chunk_seconds=None,
                      overlap_seconds=None):
        from ..streaming import DryWetStreamer, OverlapAddStreamer, align_sources

        chunk = int((chunk_seconds or self.cfg.chunk_seconds) * self.sample_rate)
        overlap = int((self.cfg.overlap_seconds if overlap_seconds is None else overlap_seconds) * self.sample_rate)
        if chunk < 0.25 * self.sample_rate or not 0 <= overlap < chunk:
            raise ValueError(f"need chunk ≥ 0.25 s and 0 ≤ overlap < chunk (got {chunk_seconds}, {overlap_seconds})")
        dev = torch.device(device)

        def run(x):
            y = self(x.to(dev)).cpu()
            return match_mixture_level(x, y) if self.task == "separate" else y

        s = OverlapAddStreamer(run, chunk, overlap, align=align_sources if self.n_src > 1 else None)
        if self.task == "enhance" and (atten_lim_db is not None or wet is not None):
            s = DryWetStreamer(s, wet=1.0 if wet is None else wet, atten_lim_db=atten_lim_db)
        return s


def match_mixture_level(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Scale separated sources y [C, S, T] so their sum best matches the mixture x [C, T].

    Why: PIT on SI-SDR leaves the output level arbitrary (outputs clipped without this);
    one least-squares gain per window and channel restores the input's level without
    changing the balance between speakers. Deterministic per window, so chunk-independent."""
    total = y.sum(1)
    gain = (x * total).sum(-1) / (total.pow(2).sum(-1) + 1e-8)
    return y * gain.clamp(0.0, 100.0)[:, None, None]
