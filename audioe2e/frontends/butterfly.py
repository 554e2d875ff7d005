"""Learnable butterfly factorisation of the FFT (a trainable fast transform).

Why: a dense learned n×n transform costs O(n²) multiply-adds per frame and must learn the
Fourier structure from scratch; the radix-2 FFT is a product of log2(n) sparse "butterfly"
factors, each made of n/2 independent 2×2 blocks. Making every 2×2 block a free complex
matrix keeps the O(n log n) cost while letting training bend the transform away from the
DFT (Dao et al., "Learning Fast Algorithms for Linear Transforms Using Butterfly
Factorizations", ICML 2019). Initialised to the exact FFT, so at step 0 the model sees the
same spectrum as an STFT model (tested against `torch.fft.rfft`).

Layout (decimation in time): bit-reverse the input, then for stage s = 1..log2(n) with block
size m = 2^s and half = m/2, each pair (top=x[j+k], bot=x[j+k+half]) becomes
    top' = a·top + b·bot,   bot' = c·top + d·bot
initialised to a = c = 1, b = w, d = −w with the twiddle w = exp(−2πik/m).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def bit_reversal_permutation(n: int) -> torch.Tensor:
    bits = int(math.log2(n))
    idx = torch.arange(n)
    rev = torch.zeros_like(idx)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


class Butterfly(nn.Module):
    """Complex butterfly transform of size n = 2^k on the last dim. `inverse=True`
    initialises to the inverse DFT (conjugate twiddles, 1/2 per stage so the product is 1/n)."""

    def __init__(self, n: int, inverse: bool = False):
        super().__init__()
        if n < 2 or n & (n - 1):
            raise ValueError(f"butterfly size must be a power of two, got {n}")
        self.n, self.stages = n, int(math.log2(n))
        self.register_buffer("perm", bit_reversal_permutation(n), persistent=False)
        sign = 1.0 if inverse else -1.0
        scale = 0.5 if inverse else 1.0
        blocks = []
        for s in range(1, self.stages + 1):
            m, half = 2 ** s, 2 ** (s - 1)
            k = torch.arange(half, dtype=torch.float64)
            w = torch.exp(sign * 2j * math.pi * k / m)  # [half]
            w = w.repeat(n // m)  # same twiddles in every block of this stage: [n/2]
            one = torch.ones_like(w)
            mat = torch.stack([torch.stack([one, w], -1), torch.stack([one, -w], -1)], -2) * scale
            blocks.append(torch.view_as_real(mat.to(torch.complex64)))  # [n/2, 2, 2, 2(re,im)]
        self.twiddles = nn.Parameter(torch.stack(blocks))  # [stages, n/2, 2, 2, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: complex [..., n] → complex [..., n].

        In training the factors are first multiplied into one dense n×n matrix (cost
        n²·log n once per step, independent of batch size) because hundreds of tiny complex
        ops per step are slow under autograd; the function and its gradients are the same.
        Inference runs the O(n log n) factorised path."""
        if self.training and torch.is_grad_enabled():
            eye = torch.eye(self.n, dtype=x.dtype, device=x.device)
            return x @ self.factorised(eye)
        return self.factorised(x)

    def factorised(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x[..., self.perm]
        tw = torch.view_as_complex(self.twiddles)  # [stages, n/2, 2, 2]
        for s in range(self.stages):
            half = 2 ** s
            blocks = self.n // (2 * half)
            v = x.reshape(*lead, blocks, 2, half)
            top, bot = v[..., 0, :], v[..., 1, :]
            t = tw[s].reshape(blocks, half, 2, 2)
            new_top = t[..., 0, 0] * top + t[..., 0, 1] * bot
            new_bot = t[..., 1, 0] * top + t[..., 1, 1] * bot
            x = torch.stack([new_top, new_bot], dim=-2).reshape(*lead, self.n)
        return x

    def multiply_adds(self) -> int:
        """Real multiply-adds per transform: 4 complex MACs (≈16 real) per pair per stage."""
        return 16 * (self.n // 2) * self.stages


class ButterflyRFFT(nn.Module):
    """Real-input analysis transform: [..., n] real → [..., n/2+1] complex (rfft layout)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.fly = Butterfly(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fly(torch.complex(x, torch.zeros_like(x)))[..., : self.n // 2 + 1]


class ButterflyIRFFT(nn.Module):
    """Synthesis transform: [..., n/2+1] complex half-spectrum → [..., n] real (irfft at init).

    The missing bins are rebuilt by Hermitian symmetry, X[n−k] = conj(X[k]); the real part of
    the learned inverse is the output frame."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.fly = Butterfly(n, inverse=True)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # Imag parts of DC and Nyquist are dropped, as irfft does.
        dc = torch.complex(spec[..., :1].real, torch.zeros_like(spec[..., :1].real))
        nyq = torch.complex(spec[..., -1:].real, torch.zeros_like(spec[..., -1:].real))
        mid = spec[..., 1:-1]
        full = torch.cat([dc, mid, nyq, mid.flip(-1).conj()], dim=-1)
        return self.fly(full).real
