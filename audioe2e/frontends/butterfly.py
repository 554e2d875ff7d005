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

    def factorised(self, x: torch.Tensor, first: int = 0, last: int | None = None,
                   permute: bool = True) -> torch.Tensor:
        """The O(n log n) path: bit reversal (if `permute`), then stages `first`..`last`−1."""
        lead = x.shape[:-1]
        if permute:
            x = x[..., self.perm]
        tw = torch.view_as_complex(self.twiddles)  # [stages, n/2, 2, 2]
        for s in range(first, self.stages if last is None else last):
            half = 2 ** s
            blocks = self.n // (2 * half)
            v = x.reshape(*lead, blocks, 2, half)
            top, bot = v[..., 0, :], v[..., 1, :]
            t = tw[s].reshape(blocks, half, 2, 2)
            new_top = t[..., 0, 0] * top + t[..., 0, 1] * bot
            new_bot = t[..., 1, 0] * top + t[..., 1, 1] * bot
            x = torch.stack([new_top, new_bot], dim=-2).reshape(*lead, self.n)
        return x

    def two_factor_blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same linear map as two block-sparse factors (the "Monarch" form of a butterfly,
        Dao et al., ICML 2022), for fast inference.

        Why it is exact: stages 1..g (g = stages // 2) only mix indices that differ in bits
        0..g−1, i.e. within contiguous groups of b = 2^g; stages g+1.. only mix indices that
        share those bits, i.e. the strided sets {r, r+b, r+2b, ...}. Multiplying each half's
        stages out gives, with x' = x[perm] viewed as [G = n/b groups q, b positions r]:
            y1[q] = x'[q] @ first[q]          first:  [G, b, b]  (q: group)
            y[:, r] = y1[:, r] @ second[r]    second: [b, G, G]  (r: position in group)
        Cost 2·n·√n complex multiply-adds in two batched matmuls instead of log2(n) passes of
        elementwise work — slower on paper (1.3–2× the MACs at n = 256), faster on a CPU."""
        g = self.stages // 2
        b, groups = 2 ** g, self.n // 2 ** g
        with torch.no_grad():
            eye = torch.eye(self.n, dtype=torch.complex64, device=self.twiddles.device)
            m1 = self.factorised(eye, 0, g, permute=False)  # block-diagonal
            m2 = self.factorised(eye, g, None, permute=False)  # strided block-diagonal
            first = torch.stack([m1[q * b:(q + 1) * b, q * b:(q + 1) * b] for q in range(groups)])
            second = torch.stack([m2[r::b, r::b] for r in range(b)])
        return first, second

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
