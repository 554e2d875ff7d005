"""Compiled GRU recurrence for the tiny enhancer's CPU inference (C extension `audioe2e._gru`).

Why: the tiny enhancer's GRU runs 125 sequential steps per second of audio with a 64-wide
state. PyTorch's CPU GRU launches about ten small ops per step and layer, so dispatch, not
arithmetic, sets its speed (~40 % of the model's time). Here the input projections of a whole
block are one batched matmul (done by the caller) and only the hidden-to-hidden recurrence
runs in a small C loop, the same equations as `torch.nn.GRU`. A JIT (numba) was tried first:
as fast, but about one second of start-up per process, more than it saves on short files.

The extension is built by `pip install` (setuptools, pyproject.toml); where it is missing
(a checkout used without installing) `available()` is False and callers use torch's GRU.
"""
from __future__ import annotations

import numpy as np

try:
    from .. import _gru
except ImportError:  # pragma: no cover - built by every install
    _gru = None


def available() -> bool:
    return _gru is not None


def gru_layer(gi: np.ndarray, h: np.ndarray, whh_t: np.ndarray, bhh: np.ndarray) -> np.ndarray:
    """gi [B, T, 3H] input projections (incl. b_ih); h [B, H] state, updated in place;
    whh_t [H, 3H] = W_hh transposed; bhh [3H]. Returns the states after every step [B, T, H]."""
    batch, steps, g3 = gi.shape
    hid = g3 // 3
    arrays = (gi, h, whh_t, bhh)
    if any(a.dtype != np.float32 or not a.flags.c_contiguous for a in arrays):
        raise ValueError("gru_layer needs C-contiguous float32 arrays")
    if h.shape != (batch, hid) or whh_t.shape != (hid, g3) or bhh.shape != (g3,):
        raise ValueError(f"gru_layer: shapes {[a.shape for a in arrays]} do not match")
    out = np.empty((batch, steps, hid), np.float32)
    _gru.gru_layer(gi, h, whh_t, bhh, out, batch, steps, hid)
    return out
