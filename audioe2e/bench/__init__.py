"""Benchmarks: quality against peers on the fixed validation sets (`python -m
audioe2e.bench.run`) and speed of the shipped models through the real CLI (`speed.py`).

`bench()` (real-time factor and peak memory of each model, in process) is what
`audioe2e bench` calls; it lives in speed.py.
"""
from .speed import bench

__all__ = ["bench"]
