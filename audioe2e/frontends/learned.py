"""Adaptive front-end: a Conv1d analysis / ConvTranspose1d synthesis pair, DFT-initialised.

Why: TasNet-style models learn their transform end to end (Luo & Mesgarani 2019); starting it
from a windowed DFT (Pariente et al. 2020, "Filterbank design for end-to-end speech
separation") gives the optimiser a working STFT on step 0. With `trainable=False` the same
module IS the fixed-STFT twin used as the baseline, so the comparison isolates the front-end.

Shapes: analysis x [B, T] → [B, N, F]; synthesis [B, N, F] → [B, T'] (trim to length).
Signals are zero-padded so every sample is covered by two windows (length arithmetic below).
"""
from __future__ import annotations

import torch
from torch import nn

from .stft import dft_basis, synthesis_basis


class ConvFrontEnd(nn.Module):
    def __init__(self, n_filters: int = 256, kernel: int = 64, stride: int | None = None,
                 trainable: bool = True):
        super().__init__()
        self.n_filters, self.kernel = n_filters, kernel
        self.stride = stride or kernel // 2
        self.encoder = nn.Conv1d(1, n_filters, kernel, self.stride, bias=False)
        self.decoder = nn.ConvTranspose1d(n_filters, 1, kernel, self.stride, bias=False)
        ana = dft_basis(n_filters, kernel)
        with torch.no_grad():
            self.encoder.weight.copy_(ana[:, None, :].float())
            self.decoder.weight.copy_(synthesis_basis(ana, kernel)[:, None, :].float())
        for p in self.parameters():
            p.requires_grad_(trainable)

    @property
    def pad(self) -> int:
        """Leading zeros so that sample 0 already sits under two windows (kernel − stride)."""
        return self.kernel - self.stride

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        total = self.pad + t
        extra = (-(total - self.kernel)) % self.stride + self.pad  # trailing: whole frames, full cover
        x = nn.functional.pad(x, (self.pad, extra))
        return self.encoder(x.unsqueeze(1))

    def synthesis(self, z: torch.Tensor, length: int) -> torch.Tensor:
        y = self.decoder(z).squeeze(1)
        return y[..., self.pad: self.pad + length]

    def multiply_adds_per_second(self, rate: int) -> float:
        return 2 * self.n_filters * self.kernel * rate / self.stride
