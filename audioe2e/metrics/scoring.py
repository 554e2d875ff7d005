"""Scoring one (reference, estimate) pair with a list of metric names, and averaging rows.

Why a module of its own: `score` is the single place that maps metric names to functions, so
the bench, `eval` and training validation compute the same numbers the same way.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .perceptual import dnsmos, estoi, pesq_nb, pesq_wb, stoi
from .sisdr import si_sdr, si_sdri

# ----------------------------------------------------------------------------- one pair
METRICS = ("si_sdr", "si_sdri", "pesq_wb", "pesq_nb", "stoi", "estoi", "dnsmos")
_FUNCS = {"pesq_wb": pesq_wb, "pesq_nb": pesq_nb, "stoi": stoi, "estoi": estoi}


def score(ref: np.ndarray, est: np.ndarray, rate: int = 16000, metrics=("si_sdr", "pesq_wb", "stoi"),
          mix: Optional[np.ndarray] = None) -> dict:
    """Requested metrics of one (ref, est) pair of equal length, as a flat dict of floats/None.
    `si_sdri` needs `mix`; `dnsmos` yields dnsmos_ovrl / dnsmos_sig / dnsmos_bak."""
    out: dict = {}
    for m in metrics:
        if m == "si_sdr":
            out[m] = si_sdr(est, ref)
        elif m == "si_sdri":
            out[m] = None if mix is None else si_sdri(est, ref, mix)
        elif m in ("pesq_wb", "pesq_nb", "stoi", "estoi"):
            out[m] = _FUNCS[m](ref, est, rate)
        elif m == "dnsmos":
            d = dnsmos(est, rate)
            for k in ("ovrl", "sig", "bak"):
                out[f"dnsmos_{k}"] = None if d is None else d[k]
        else:
            raise ValueError(f"unknown metric '{m}' (known: {', '.join(METRICS)})")
    return out


def mean_of(rows: list[dict], keys) -> dict:
    """Column means ignoring None/NaN; None where no value exists."""
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and np.isfinite(r[k])]
        out[k] = float(np.mean(vals)) if vals else None
    return out
