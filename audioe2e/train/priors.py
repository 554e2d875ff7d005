"""Static entropy-coding priors for the codec, measured on training mixtures.

Why static: the `.ae2` coder must give identical bytes on every machine and decode without
adaptive state, so each quantiser stage gets one fixed integer frequency table (stored in
the weights file as `prior_counts`) counted from codes of training audio (never validation).
"""
from __future__ import annotations

import torch


@torch.no_grad()
def fit_priors(codec, corpus, batches: int = 40, batch_size: int = 8, seconds: float = 4.0, seed: int = 99,
               clean_share: float | None = None) -> torch.Tensor:
    """Code counts `[n_q, codebook_size]` (+1 each) over training mixtures drawn as the codec's
    recipe draws them (`clean_share` of the inputs clean; default `data.CLEAN_SHARE`)."""
    from .data import CLEAN_SHARE, Corpus, Mixer, batch

    mixer = Mixer(Corpus(corpus, "train"), seconds, clean_share=CLEAN_SHARE if clean_share is None else clean_share)
    counts = torch.ones(codec.n_q, codec.codebook_size, dtype=torch.int64)  # +1: every code codable
    codec.eval()
    for step in range(batches):
        x, _ = batch(mixer, "codec", batch_size, seed, step)
        x = torch.nn.functional.pad(x, (0, (-x.shape[-1]) % codec.hop))
        codes = codec.encode_frames(x, codec.n_q)  # [B, n_q, F]
        for q in range(codec.n_q):
            counts[q] += torch.bincount(codes[:, q].flatten(), minlength=codec.codebook_size)
    return counts
