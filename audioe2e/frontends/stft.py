"""Analytic STFT reference and the DFT basis that learned front-ends start from.

Why: the adaptive front-end's claim is "better than a fixed STFT", so the fixed twin must be
exactly an STFT, and the learned one must equal it at initialisation (tested). The basis
layout used everywhere: channels [Re X_0..Re X_{K-1}, Im X_0..Im X_{K-1}] with K = N/2
frequencies ω_k = πk/K (a zero-padded DFT of size N = 2K over a window of L samples).
"""
from __future__ import annotations

import math

import torch


def sqrt_hann(length: int) -> torch.Tensor:
    """Periodic sqrt-Hann: analysis × synthesis = Hann, which sums to 1 at 50% overlap."""
    return torch.hann_window(length, periodic=True, dtype=torch.float64).sqrt()


def dft_basis(n_filters: int, length: int) -> torch.Tensor:
    """[N, L] windowed real/imag DFT rows (float64)."""
    k = n_filters // 2
    t = torch.arange(length, dtype=torch.float64)
    w = torch.pi * torch.arange(k, dtype=torch.float64)[:, None] / k
    win = sqrt_hann(length)
    return torch.cat([torch.cos(w * t) * win, -torch.sin(w * t) * win], dim=0)


def sine_window(length: int) -> torch.Tensor:
    """sin(π(t+½)/L): power-complementary at 50 % overlap like sqrt-Hann, but without its zero
    at t = 0, so a synthesis basis windowed by it has full rank (`Codec.reset_synthesis`)."""
    return torch.sin(torch.pi * (torch.arange(length, dtype=torch.float64) + 0.5) / length)


def synthesis_basis(analysis: torch.Tensor, length: int, window: torch.Tensor | None = None) -> torch.Tensor:
    """[N, L] synthesis rows: window × pseudo-inverse of the un-windowed DFT rows.

    pinv(F)·(F·diag(w)·x) = w·x per frame; windowing again gives w²·x, and overlap-adding
    w² (Hann) at hop L/2 gives x back: perfect reconstruction at initialisation. `window`
    replaces the sqrt-Hann synthesis window."""
    win = sqrt_hann(length) if window is None else window
    n = analysis.shape[0]
    k = n // 2
    t = torch.arange(length, dtype=torch.float64)
    w = torch.pi * torch.arange(k, dtype=torch.float64)[:, None] / k
    plain = torch.cat([torch.cos(w * t), -torch.sin(w * t)], 0)
    pinv = torch.linalg.pinv(plain)  # [L, N]
    return (pinv * win[:, None]).T.contiguous()


def stft_reference(x: torch.Tensor, n_filters: int, length: int, hop: int) -> torch.Tensor:
    """What the front-end computes, via torch.fft: x [B, T] → [B, N, frames] (no padding)."""
    frames = x.unfold(-1, length, hop) * sqrt_hann(length).to(x.dtype)  # [B, F, L]
    spec = torch.fft.rfft(frames, n=n_filters, dim=-1)[..., : n_filters // 2]
    return torch.cat([spec.real, spec.imag], dim=-1).transpose(1, 2)


def frames_for(length: int, win: int, hop: int) -> int:
    return 1 + max(0, math.ceil((length - win) / hop))
