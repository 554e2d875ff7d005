"""Objective speech metrics for `audioe2e eval` and the bench: SI-SDR(i), PIT, PESQ, STOI, DNSMOS.

Why one package: the bench, `eval` and training validation must compute the same numbers the
same way. SI-SDR is numpy (no dependency); PESQ (`pesq`), STOI/eSTOI (`pystoi`) and DNSMOS
(`speechmos`) are optional: when a package is missing the metric returns None and
`missing(name)` says why, so callers print "n/a" instead of failing. Signals are 1-D float
arrays `[T]`; PESQ, STOI and DNSMOS resample to 16 kHz (PESQ-NB to 8 kHz) with soxr.
`evaluate_dirs` (behind `audioe2e eval`) pairs two folders of files and scores every pair.

One job per module: `sisdr` (SI-SDR, SI-SDRi, PIT), `perceptual` (the optional-package
metrics and resampling), `scoring` (metric names -> one pair's scores, means), `folders`
(`evaluate_dirs`). The names below are the public API: import them from `audioe2e.metrics`.
"""
import importlib  # noqa: F401  (tests patch `metrics.importlib.import_module`)

from .folders import EvalError, evaluate_dirs  # noqa: F401
from .perceptual import (available, dnsmos, estoi, missing, pesq_nb, pesq_wb,  # noqa: F401
                         resample, stoi)
from .scoring import METRICS, mean_of, score  # noqa: F401
from .sisdr import EPS, pit_si_sdr, si_sdr, si_sdri  # noqa: F401
