"""Speed of the shipped models: real-time factor and peak memory, with one thread and all.

Two ways, both on generated input (seeded noise, 16 kHz):
- `cli_speed()` (the bench): runs the real CLI in a subprocess, `python -m audioe2e enhance
  --tiny in.wav -o out.wav --quiet --threads N` etc., so the number is what a user gets: file
  I/O, resampling and streaming included. Wall time by `time.perf_counter`, peak RSS of that
  child from `os.wait4` in a small launcher process (per process, unlike RUSAGE_CHILDREN which
  keeps the maximum over all children, and not floored by the bench's own RSS). Interpreter + torch start-up is measured on a 0.5 s input and reported apart, and
  `rtf_net` subtracts it. 10 s inputs: median of 3 runs; 10 min: one run (skipped by --quick).
- `bench()` (what `audioe2e bench` calls): the model's streamer in this process, 0.5 s blocks.
RTF = processing time / audio time (below 1 is faster than real time).
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

BENCH_MODELS = ("enhancer-tiny", "enhancer", "separator", "codec")
RATE = 16000
# Per model: the CLI steps of one run ({i}: input wav, {o}: output stem in a temp folder).
CLI_STEPS = {
    "enhancer-tiny": [["enhance", "--tiny", "{i}", "-o", "{o}.wav"]],
    "enhancer": [["enhance", "{i}", "-o", "{o}.wav"]],
    "separator": [["separate", "{i}", "-o", "{o}/"]],
    "codec": [["encode", "{i}", "-o", "{o}.ae2", "--bitrate", "3"], ["decode", "{o}.ae2", "-o", "{o}.wav"]],
}


def write_input(path: Path, seconds: float, seed: int = 0) -> None:
    """Seeded noise with a slow amplitude envelope, written block by block (flat memory)."""
    import soundfile as sf
    rng = np.random.default_rng(seed)
    n, block = int(seconds * RATE), 10 * RATE
    with sf.SoundFile(str(path), "w", RATE, 1, "PCM_16") as f:
        for i in range(0, n, block):
            m = min(block, n - i)
            env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * (i + np.arange(m)) / RATE)
            f.write((0.1 * env * rng.standard_normal(m)).astype(np.float32))


# Measures one command from a small launcher process: a child's peak RSS (ru_maxrss) starts at
# its parent's RSS at fork/exec time on Linux, so spawning straight from the bench (torch
# loaded, ~400 MB) would floor every reading; the launcher's few MB do not matter.
_LAUNCHER = r"""
import json, os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "rss_kb": ru.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}, f)
"""


def run_cli(args: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of `python -m audioe2e ARGS --quiet -f --threads N`."""
    import json
    cmd = [sys.executable, "-m", "audioe2e", *args, "--quiet", "-f", "--device", "cpu",
           "--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="ae2run") as d, tempfile.TemporaryFile() as err:
        res = Path(d) / "r.json"
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(res), *cmd],
                       stdout=subprocess.DEVNULL, stderr=err, check=False)
        r = json.loads(res.read_text()) if res.is_file() else {"rc": -1}
        if r["rc"]:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"`audioe2e {' '.join(args[:1])}` exited {r['rc']}: "
                               f"{msg[-1] if msg else ''}")
    return r["wall"], r["rss_kb"] / 1024


def _one(name: str, inp: Path, work: Path, threads: int) -> tuple[float, float]:
    wall, rss = 0.0, 0.0
    for step in CLI_STEPS[name]:
        w, r = run_cli([a.format(i=inp, o=work / "out") for a in step], threads)
        wall, rss = wall + w, max(rss, r)
    return wall, rss


def cli_speed(names=BENCH_MODELS, durations=(10.0, 600.0), repeats: int = 3,
              threads: Optional[list[int]] = None, log=print) -> list[dict]:
    """One row per (model, threads, duration); unavailable models get a status row."""
    from ..registry import ModelNotAvailable, model_info
    all_threads = os.cpu_count() or 1
    threads = threads or sorted({1, all_threads})
    rows = []
    with tempfile.TemporaryDirectory(prefix="ae2speed") as d:
        d = Path(d)
        inputs = {s: d / f"in_{s:g}s.wav" for s in (0.5, *durations)}
        for s, p in inputs.items():
            write_input(p, s)
        for name in names:
            try:
                model_info(name)
            except ModelNotAvailable as e:
                rows.append({"model": name, "status": f"not available: {e}"})
                continue
            for th in threads:
                try:
                    startup = min(_one(name, inputs[0.5], d, th)[0] for _ in range(min(2, repeats)))
                    for s in durations:
                        runs = [_one(name, inputs[s], d, th) for _ in range(repeats if s <= 60 else 1)]
                        wall = statistics.median(w for w, _ in runs)
                        row = {"model": name, "status": "ok", "threads": th, "input_s": s,
                               "runs": len(runs), "wall_s": wall, "rtf": wall / s,
                               "startup_s": startup, "rtf_net": max(wall - startup, 0.0) / s,
                               "peak_rss_mb": max(r for _, r in runs)}
                        log(f"speed {name} threads={th} {s:g}s: rtf {row['rtf']:.3f} "
                            f"(net {row['rtf_net']:.3f}), {row['peak_rss_mb']:.0f} MB")
                        rows.append(row)
                except Exception as e:
                    rows.append({"model": name, "status": f"failed: {e}", "threads": th})
                    log(f"speed {name} threads={th}: failed: {e}")
    return rows


# ----------------------------------------------------------------------------- in process
def _run_once(model, x, device: str, block: int) -> float:
    import torch
    t0 = time.perf_counter()
    with torch.inference_mode():
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
    """In-process: one row per model, rtf at 1 thread and at `threads` (default: all),
    peak RSS of this process in MB."""
    import torch

    from ..api import load_model
    from ..registry import ModelNotAvailable

    all_threads = threads or torch.get_num_threads()
    rows = []
    for name in names or BENCH_MODELS:
        try:
            model = load_model(name, device)
        except ModelNotAvailable as e:
            rows.append({"model": name, "status": str(e)})
            continue
        rate = int(model.sample_rate)
        x = (np.random.default_rng(0).standard_normal((1, int(seconds * rate))) * 0.1).astype(np.float32)
        row = {"model": name, "status": "ok", "seconds": seconds, "sample_rate": rate}
        for th in sorted({1, all_threads}):
            torch.set_num_threads(th)
            times = [_run_once(model, x, device, rate // 2) for _ in range(repeats)]
            row[f"rtf_{th}_thread" + ("s" if th > 1 else "")] = statistics.median(times) / seconds
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
    torch.set_num_threads(all_threads)
    return rows
