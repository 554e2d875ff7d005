"""PESQ, STOI/eSTOI and DNSMOS through optional packages, plus the resampling they need.

Why a module of its own: these wrappers share one policy: `pesq`, `pystoi` and `speechmos`
are optional, so a missing (or broken) package makes the metric return None and `missing(name)`
says why, instead of failing. Inputs are resampled to 16 kHz (PESQ-NB to 8 kHz) with soxr.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Optional

import numpy as np

_NOTES: dict[str, str] = {}


# ----------------------------------------------------------------------------- optional packages
def _optional(module: str, pip_name: str):
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken native dependency
        _NOTES[pip_name] = f"{pip_name} not available ({type(e).__name__}: {e}); pip install {pip_name}"
        return None


def missing(name: str) -> Optional[str]:
    """Why metric package `name` (pesq, pystoi, speechmos) is unusable, or None."""
    return _NOTES.get(name)


_PKG = {"pesq_wb": ("pesq", "pesq"), "pesq_nb": ("pesq", "pesq"), "stoi": ("pystoi", "pystoi"),
        "estoi": ("pystoi", "pystoi"), "dnsmos": ("speechmos.dnsmos", "speechmos")}


def available(metric: str) -> bool:
    """Whether the package behind `metric` imports (SI-SDR always does)."""
    return metric not in _PKG or _optional(*_PKG[metric]) is not None


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if int(rate) == int(to):
        return x
    import soxr
    return soxr.resample(x, int(rate), int(to), quality="HQ").astype(np.float32)


def _pesq(ref, est, rate, target_rate, mode) -> Optional[float]:
    mod = _optional("pesq", "pesq")
    if mod is None:
        return None
    ref, est = resample(ref, rate, target_rate), resample(est, rate, target_rate)
    n = min(len(ref), len(est))
    try:
        return float(mod.pesq(target_rate, ref[:n].astype(np.float64), est[:n].astype(np.float64), mode))
    except Exception as e:  # NoUtterancesError on silent references, too-short input
        warnings.warn(f"PESQ failed: {e}")
        return float("nan")


def pesq_wb(ref: np.ndarray, est: np.ndarray, rate: int = 16000) -> Optional[float]:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.04–4.64) at 16 kHz; None without `pesq`."""
    return _pesq(ref, est, rate, 16000, "wb")


def pesq_nb(ref: np.ndarray, est: np.ndarray, rate: int = 16000) -> Optional[float]:
    """Narrow-band PESQ (P.862, MOS-LQO) after resampling to 8 kHz; None without `pesq`."""
    return _pesq(ref, est, rate, 8000, "nb")


def _stoi(ref, est, rate, extended) -> Optional[float]:
    mod = _optional("pystoi", "pystoi")
    if mod is None:
        return None
    ref, est = resample(ref, rate, 16000), resample(est, rate, 16000)
    n = min(len(ref), len(est))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns on very short / silent input
        return float(mod.stoi(ref[:n].astype(np.float64), est[:n].astype(np.float64), 16000,
                              extended=extended))


def stoi(ref: np.ndarray, est: np.ndarray, rate: int = 16000) -> Optional[float]:
    """Short-time objective intelligibility (0–1); None without `pystoi`."""
    return _stoi(ref, est, rate, False)


def estoi(ref: np.ndarray, est: np.ndarray, rate: int = 16000) -> Optional[float]:
    """Extended STOI (Jensen & Taal 2016, 0–1); None without `pystoi`."""
    return _stoi(ref, est, rate, True)


def dnsmos(x: np.ndarray, rate: int = 16000) -> Optional[dict]:
    """Non-intrusive DNSMOS P.835 (speechmos): {'ovrl', 'sig', 'bak', 'p808'} or None.
    The first call is slow (~20 s: librosa/numba JIT and ONNX sessions)."""
    mod = _optional("speechmos.dnsmos", "speechmos")
    if mod is None:
        return None
    x = np.clip(resample(x, rate, 16000), -1.0, 1.0).astype(np.float32)
    try:
        r = mod.run(x, 16000)
    except Exception as e:
        _NOTES["speechmos"] = f"DNSMOS failed ({type(e).__name__}: {e})"
        return None
    return {"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]),
            "bak": float(r["bak_mos"]), "p808": float(r["p808_mos"])}
