"""Building blocks shared by the networks: global layer norm and the Conv-TasNet TCN block."""
from __future__ import annotations

import torch
from torch import nn


class GlobalLayerNorm(nn.Module):
    """gLN (Luo & Mesgarani 2019): normalise over channels and time of each example.
    Non-causal by design; used only in models run with fixed-window overlap-add."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return self.gamma * (x - mean) / (var + self.eps).sqrt() + self.beta


class TCNBlock(nn.Module):
    """1×1 conv → PReLU → gLN → dilated depthwise conv → PReLU → gLN → 1×1 residual/skip."""

    def __init__(self, channels: int, hidden: int, kernel: int, dilation: int):
        super().__init__()
        pad = (kernel - 1) * dilation // 2
        self.net = nn.Sequential(
            nn.Conv1d(channels, hidden, 1), nn.PReLU(), GlobalLayerNorm(hidden),
            nn.Conv1d(hidden, hidden, kernel, padding=pad, dilation=dilation, groups=hidden),
            nn.PReLU(), GlobalLayerNorm(hidden),
        )
        self.res = nn.Conv1d(hidden, channels, 1)
        self.skip = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor):
        h = self.net(x)
        return x + self.res(h), self.skip(h)


class TCN(nn.Module):
    """R repeats of X blocks with dilations 1, 2, …, 2^(X−1); returns the summed skips."""

    def __init__(self, channels: int, hidden: int, layers: int, repeats: int, kernel: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(
            TCNBlock(channels, hidden, kernel, 2 ** i) for _ in range(repeats) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = 0
        for block in self.blocks:
            x, s = block(x)
            skip = skip + s
        return skip
