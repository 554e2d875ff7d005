"""Causal building blocks of the codec: left-padded convs, the DFT-initialised causal
transform pair (analysis conv / overlap-add synthesis), residual units.

Why separate: they carry the length and causality arithmetic (what each output may see),
which the codec's streaming exactness rests on; the codec file then only says how they are
stacked. Shapes are [B, C, T] throughout.
"""
from __future__ import annotations

import torch
from torch import nn

from ..frontends.stft import dft_basis, synthesis_basis


class CausalConv(nn.Conv1d):
    """Conv1d padded on the left only. Stride 1: output t sees inputs ≤ t. Stride s: output
    j sees inputs < (j+1)·s, i.e. its whole block — not only the block's first sample, which
    would leave the decoder to predict the rest of each frame from the past."""

    def forward(self, x):
        pad = (self.kernel_size[0] - 1) * self.dilation[0] - (self.stride[0] - 1)
        return super().forward(nn.functional.pad(x, (pad, 0)))


class CausalConvTranspose(nn.ConvTranspose1d):
    """Upsampling by `stride` with kernel 2·stride; keeping the first T·stride outputs makes
    output block t depend on input frames ≤ t only."""

    def forward(self, x):
        return super().forward(x)[..., : x.shape[-1] * self.stride[0]]


class SignedLog(nn.Module):
    """sign(x)·log(1+|x|): compresses the transform's dynamic range (speech levels differ by
    40 dB) while keeping the sign, which carries the phase."""

    def forward(self, x):
        return torch.sign(x) * torch.log1p(x.abs())


class ResUnit(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.net = nn.Sequential(nn.ELU(), CausalConv(c, c // 2, 3, dilation=dilation), nn.ELU(), nn.Conv1d(c // 2, c, 1))

    def forward(self, x):
        return x + self.net(x)


class OverlapAddSynthesis(nn.Module):
    """`CausalConvTranspose(N, 1, 2·hop, stride=hop)` computed as one matmul (coefficients →
    windowed frames) plus a two-frame overlap-add. Same weight, same output; PyTorch's CPU
    transposed conv with one output channel and a 320-tap kernel was ~10× slower than the
    rest of the decoder together. [B, N, F] → [B, 1, F·hop]."""

    def __init__(self, n_filters: int, window: int):
        super().__init__()
        self.hop = window // 2
        self.weight = nn.Parameter(torch.zeros(n_filters, 1, window))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, _, f = z.shape
        frames = torch.einsum("bnf,nl->bfl", z, self.weight[:, 0])  # [B, F, 2·hop]
        h = self.hop
        prev = nn.functional.pad(frames[:, :-1, h:], (0, 0, 1, 0))  # frame t−1's second half
        return (frames[:, :, :h] + prev).reshape(b, 1, f * h)


def learned_transform_pair(n_filters: int, window: int) -> tuple[nn.Module, nn.Module]:
    """Causal analysis conv (window, hop window/2) and its synthesis, DFT/pinv-initialised
    so that synthesis(analysis(x)) = x (delayed by nothing) before training."""
    hop = window // 2
    ana = CausalConv(1, n_filters, window, stride=hop, bias=False)
    syn = OverlapAddSynthesis(n_filters, window)
    basis = dft_basis(n_filters, window)
    with torch.no_grad():
        ana.weight.copy_(basis[:, None, :].float())
        syn.weight.copy_(synthesis_basis(basis, window)[:, None, :].float())
    return ana, syn
