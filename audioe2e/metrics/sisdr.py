"""SI-SDR, SI-SDR improvement and permutation-invariant SI-SDR, in plain numpy.

Why a module of its own: these are the metrics with no optional dependency; training
validation, the bench and `eval` all use them, and they must always be available.
"""
from __future__ import annotations

import itertools

import numpy as np

EPS = 1e-8


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float | np.ndarray:
    """Scale-invariant SDR in dB over the last axis (Le Roux et al. 2019), zero-mean.

    `est`, `ref`: `[..., T]`; returns a float for 1-D input, else an array `[...]`.
    SI-SDR = 10 log10(|a·ref|² / |est − a·ref|²) with a = <est, ref> / |ref|²."""
    est = np.asarray(est, np.float64)
    ref = np.asarray(ref, np.float64)
    est = est - est.mean(-1, keepdims=True)
    ref = ref - ref.mean(-1, keepdims=True)
    a = (est * ref).sum(-1, keepdims=True) / ((ref * ref).sum(-1, keepdims=True) + EPS)
    target = a * ref
    noise = est - target
    out = 10 * np.log10(((target ** 2).sum(-1) + EPS) / ((noise ** 2).sum(-1) + EPS))
    return float(out) if out.ndim == 0 else out


def si_sdri(est: np.ndarray, ref: np.ndarray, mix: np.ndarray) -> float | np.ndarray:
    """SI-SDR improvement over the unprocessed input `mix`, in dB."""
    return si_sdr(est, ref) - si_sdr(mix, ref)


def pit_si_sdr(est: np.ndarray, ref: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Permutation-invariant SI-SDR: est `[S, T]`, ref `[S, T]` → (mean dB, perm) where
    `est[perm[i]]` is the estimate of `ref[i]` (the permutation maximising the mean)."""
    est, ref = np.asarray(est), np.asarray(ref)
    if est.shape[0] != ref.shape[0]:
        raise ValueError(f"{est.shape[0]} estimates for {ref.shape[0]} references")
    pair = np.array([[si_sdr(e, r) for e in est] for r in ref])  # [ref, est]
    best, perm = -np.inf, None
    for p in itertools.permutations(range(ref.shape[0])):
        score = float(np.mean([pair[i, j] for i, j in enumerate(p)]))
        if score > best:
            best, perm = score, p
    return best, tuple(int(i) for i in perm)
