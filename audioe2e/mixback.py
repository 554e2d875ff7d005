"""Mixing the noisy input back under an enhancer's output (`--atten-lim`, `--mix`).

out = wet·(enh·(1−g) + x·g) + (1−wet)·x, with g = 10^(−atten_lim/20): with `atten_lim_db` the
noise is attenuated by at most that many dB (as DeepFilterNet's `--atten-lim`), `wet` is the
plain dry/wet control. Why one module: the torch streamer, the torch-free streamer and the
bench's in-process scoring must apply the same formula to the same time-aligned samples. No
torch import: the arithmetic works on numpy arrays and torch tensors alike.
"""
from __future__ import annotations

from typing import Optional


def floor_gain(atten_lim_db: Optional[float]) -> float:
    """g, the share of the input mixed back: 0 for no limit (None), 1 for 0 dB."""
    return 0.0 if atten_lim_db is None else 10 ** (-abs(atten_lim_db) / 20)


def mix_back(y, x, g: float, wet: float = 1.0):
    """The output for enhanced `y` and its time-aligned input `x` (arrays or tensors)."""
    return wet * (y * (1 - g) + x * g) + (1 - wet) * x
