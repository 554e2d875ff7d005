"""`audioe2e bench`: real-time factor and peak memory of each shipped model on this machine.

Synthetic input (seeded noise at the model rate), streamed in 0.5 s blocks exactly as the
file verbs do, with one thread and with all threads; the median of `repeats` runs is kept.
RTF = processing time / audio time (below 1 is faster than real time).
"""
from __future__ import annotations

import resource
import statistics
import time
from typing import Optional

import numpy as np

BENCH_MODELS = ("enhancer-tiny", "enhancer", "separator", "codec")


def _run_once(model, x, device: str, block: int) -> float:
    import torch

    t0 = time.perf_counter()
    if getattr(model, "task", "") == "codec":
        n_q = int(model.bitrate_to_nq(3.0))
        enc, dec = model.make_encoder(n_q, device), model.make_decoder(n_q, device)
        for i in range(0, x.shape[-1], block):
            dec.feed(enc.feed(torch.from_numpy(x[:, i:i + block])))
        dec.feed(enc.flush())
        dec.flush()
    else:
        st = model.make_streamer(device)
        for i in range(0, x.shape[-1], block):
            st.feed(torch.from_numpy(x[:, i:i + block]))
        st.flush()
    return time.perf_counter() - t0


def bench(names: Optional[list[str]] = None, seconds: float = 10.0, repeats: int = 3,
          device: str = "cpu", threads: Optional[int] = None) -> list[dict]:
    """One row per model: rtf at 1 thread and at `threads` (default: all), peak RSS in MB."""
    import torch

    from .api import load_model
    from .registry import ModelNotAvailable

    all_threads = threads or torch.get_num_threads()
    rows = []
    for name in names or BENCH_MODELS:
        try:
            model = load_model(name, device)
        except ModelNotAvailable as e:
            rows.append({"model": name, "status": str(e)})
            continue
        rate = int(model.sample_rate)
        x = (np.random.default_rng(0).standard_normal((1, int(seconds * rate))) * 0.1
             ).astype(np.float32)
        row = {"model": name, "status": "ok", "seconds": seconds, "sample_rate": rate}
        for th in sorted({1, all_threads}):
            torch.set_num_threads(th)
            times = [_run_once(model, x, device, rate // 2) for _ in range(repeats)]
            row[f"rtf_{th}_thread" + ("s" if th > 1 else "")] = statistics.median(times) / seconds
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
    torch.set_num_threads(all_threads)
    return rows
