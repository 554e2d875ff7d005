"""Training objectives: SI-SDR, utterance-level PIT, multi-resolution STFT magnitude.

Why these: SI-SDR is what separation is judged by and trains time-domain models directly
(Le Roux et al. 2019); PIT makes the loss blind to speaker order (Kolbæk et al. 2017);
multi-resolution STFT terms (Yamamoto et al. 2020) keep the spectral balance that SI-SDR
alone ignores, which matters for enhancement and for the codec.
"""
from __future__ import annotations

from itertools import permutations

import torch


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last dim (zero-mean first). [..., T] → [...]."""
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def pit_si_sdr(est: torch.Tensor, ref: torch.Tensor):
    """Utterance-level PIT. est, ref [B, S, T] → (mean best SI-SDR per example [B], best
    permutation [B, S]: est[b, perm[b, s]] pairs with ref[b, s])."""
    s = est.shape[1]
    pair = si_sdr(est.unsqueeze(2), ref.unsqueeze(1))  # [B, S_est, S_ref]
    perms = torch.tensor(list(permutations(range(s))), device=est.device)  # [P, S]
    idx = torch.arange(s, device=est.device)
    scores = pair[:, perms, idx].mean(-1)  # [B, P]
    best, which = scores.max(dim=1)
    return best, perms[which]


def pit_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return -pit_si_sdr(est, ref)[0].mean()


def stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    return torch.stft(x, n_fft, hop, window=win, return_complex=True).abs()


def multires_stft_loss(est: torch.Tensor, ref: torch.Tensor,
                       resolutions=((512, 128), (1024, 256), (256, 64))) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over resolutions. [B, T] inputs."""
    total = 0.0
    for n_fft, hop in resolutions:
        e, r = stft_mag(est, n_fft, hop), stft_mag(ref, n_fft, hop)
        sc = (r - e).norm(dim=(-2, -1)) / (r.norm(dim=(-2, -1)) + 1e-7)
        mag = (torch.log(e + 1e-5) - torch.log(r + 1e-5)).abs().mean(dim=(-2, -1))
        total = total + (sc + mag).mean()
    return total / len(resolutions)


def level_error_db(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """|output level − reference level| in dB per example: the one thing SI-SDR ignores."""
    return 10 * (torch.log10(est.pow(2).mean(-1) + eps) - torch.log10(ref.pow(2).mean(-1) + eps)).abs()


def enhancement_loss(est: torch.Tensor, ref: torch.Tensor, stft_weight: float = 0.0,
                     level_weight: float = 0.0) -> torch.Tensor:
    """−SI-SDR + optional multi-resolution STFT and level (dB) terms; the weights live in
    the recipes (and the codec), the defaults add nothing to −SI-SDR.

    Measured (default enhancer, same seed and data, 600 steps): −SI-SDR alone reached
    +3.3 dB SI-SDRi, with the STFT term at weight 1 +2.2 dB, at weight 10 +1.1 dB — the
    log-magnitude part's gradient, ~100× SI-SDR's, is spent on the digital silence of the
    clean targets. So the enhancers train on SI-SDR with the level term only."""
    loss = -si_sdr(est, ref).mean()
    if stft_weight:
        loss = loss + stft_weight * multires_stft_loss(est, ref)
    if level_weight:
        loss = loss + level_weight * level_error_db(est, ref).mean()
    return loss
