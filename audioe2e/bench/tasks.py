"""The three quality sections of the bench: enhancement, separation, codec.

Each system is a function of one validation clip; a system whose model, package or binary is
missing becomes a row saying so, and one that fails says why: the bench always finishes.
Every number is a mean over the clips of the section (the same clips for every system).
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .. import metrics as M
from ..registry import ModelNotAvailable
from ..train.data import rms
from . import ours, peers

RATE = 16000


def load_items(d: Path, subdirs: tuple[str, ...], limit: int | None = None) -> list[dict]:
    """Clips of a valset folder (`meta.jsonl` + one WAV per id in each sub-folder)."""
    meta = [json.loads(s) for s in (d / "meta.jsonl").read_text().splitlines() if s.strip()]
    items = []
    for m in meta[:limit] if limit else meta:
        item = dict(m)
        for s in subdirs:
            x, r = sf.read(str(d / s / f"{m['id']}.wav"), dtype="float32")
            item[s] = M.resample(x if x.ndim == 1 else x.mean(1), r, RATE)
        items.append(item)
    return items


def _status(e: BaseException) -> str:
    if isinstance(e, (ModelNotAvailable, peers.PeerUnavailable)):
        return f"not available: {e}"
    return f"failed: {type(e).__name__}: {e}"


def _pool_map(fn, args: list, jobs: int) -> list:
    if jobs <= 1 or len(args) < 2:
        return [fn(*a) for a in args]
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(jobs) as ex:
        return list(ex.map(fn, *zip(*args)))


def run_system(name: str, setup: Callable, items: list[dict], evaluate: Callable, log,
               jobs: int = 1) -> dict:
    """`setup()` → fn(item) → output; `evaluate(item, output)` (a module-level function,
    run in `jobs` processes) → per-clip metric dict. Returns the row: means of the numeric
    keys, `n`, `rtf` (processing time / audio time, in process) and the per-clip dicts."""
    t0 = time.perf_counter()
    try:
        fn = setup()
        outs, proc = [], 0.0
        for it in items:
            t = time.perf_counter()
            outs.append(fn(it))
            proc += time.perf_counter() - t
        clips = _pool_map(evaluate, [(it, o) for it, o in zip(items, outs)], jobs)
    except Exception as e:  # noqa: BLE001 - one system failing must not stop the bench
        log(f"  {name}: {_status(e)}")
        return {"system": name, "status": _status(e)}
    keys = [k for k in clips[0] if k != "snr_db" and isinstance(clips[0][k], (int, float, type(None)))]
    row = {"system": name, "status": "ok", "n": len(clips), **M.mean_of(clips, keys),
           "rtf": proc / (sum(len(it["input"]) for it in items) / RATE), "clips": clips}
    log(f"  {name}: done in {time.perf_counter() - t0:.0f} s")
    return row


def _model(name: str, run: Callable) -> Callable:
    def setup():
        model = ours.load(name)
        return lambda it: run(model, it["input"])
    return setup


def _peer(fn: Callable) -> Callable:
    return lambda: fn


def with_mets(items: list[dict], name: str, mets: list[str], dnsmos_only: tuple[str, ...] = ()) -> list[dict]:
    """The items with the metrics for system `name`: DNSMOS (slow: seconds per clip on a CPU
    core) only for the systems whose name contains one of `dnsmos_only`, when that is given."""
    if "dnsmos" in mets and dnsmos_only and not any(p in name for p in dnsmos_only):
        mets = [m for m in mets if m != "dnsmos"]
    return [dict(it, mets=mets) for it in items]


def eval_enhance(it: dict, est: np.ndarray) -> dict:
    return {**M.score(it["target"], est, RATE, it["mets"], mix=it["input"]), "snr_db": it.get("snr_db")}


def eval_separate(it: dict, est: np.ndarray) -> dict:
    ref = np.stack([it["s1"], it["s2"]])
    pit, _ = M.pit_si_sdr(est[:2], ref)
    base = float(np.mean(M.si_sdr(np.stack([it["input"]] * 2), ref)))
    return {"si_sdr": pit, "si_sdri": pit - base, "pair": it.get("pair", "unknown")}


def eval_codec(it: dict, res: tuple) -> dict:
    y, size, stream = res
    y, _ = peers.align(y, it["input"], 8)
    return {**M.score(it["target"], y, RATE, it["mets"]), "bytes": size, "stream_bytes": stream}


# ----------------------------------------------------------------------------- enhancement
RNNOISE = "RNNoise (pyrnnoise)"  # its row name; bench table 1d pairs audioe2e against it


def _enhance_systems() -> list[tuple[str, Callable]]:
    """The unprocessed input, our two enhancers and RNNoise: the rows of every enhancement table."""
    from ..registry import default_atten_lim_db

    def label(name: str) -> str:  # the CLI's default output, named with its noise floor if any
        lim = default_atten_lim_db(name)
        return f"audioe2e {name}" + (f" ({lim:g} dB floor)" if lim is not None else "")
    return [
        ("noisy input (no processing)", _peer(lambda it: it["input"])),
        (label("enhancer-tiny"), _model("enhancer-tiny", ours.enhance)),
        (label("enhancer"), _model("enhancer", ours.enhance)),
        (RNNOISE, _peer(lambda it: peers.rnnoise(it["input"], RATE))),
    ]


def enhance(d: Path, limit=None, dnsmos=False, log=print, jobs=1, dnsmos_only: tuple[str, ...] = ()) -> dict:
    mets = ["pesq_wb", "stoi", "si_sdr", "si_sdri"] + (["dnsmos"] if dnsmos else [])
    items = load_items(d, ("input", "target"), limit)
    systems = _enhance_systems() + [
        ("noisereduce, non-stationary", _peer(lambda it: peers.spectral_gating(it["input"], RATE))),
        ("noisereduce, stationary", _peer(lambda it: peers.spectral_gating(it["input"], RATE, True))),
        ("oracle IRM (upper bound)", _peer(lambda it: peers.oracle_masks(it["input"], it["target"][None], "irm")[0])),
        ("oracle IBM (upper bound)", _peer(lambda it: peers.oracle_masks(it["input"], it["target"][None], "ibm")[0])),
    ]
    # The tiny model's own output, without the noise floor `enhance --tiny` keeps by default.
    systems.insert(2, ("audioe2e enhancer-tiny, no floor (--atten-lim inf)", _model("enhancer-tiny", ours.enhance_raw)))
    if (ours.models_dir() / "enhancer-tiny-dense.safetensors").is_file():
        systems.insert(2, ("audioe2e enhancer-tiny, dense DFT twin", _model("enhancer-tiny-dense", ours.enhance)))

    log(f"enhancement: {len(items)} clips")
    rows = [run_system(n, s, with_mets(items, n, mets, dnsmos_only), eval_enhance, log, jobs) for n, s in systems]
    snrs = sorted({it["snr_db"] for it in items if it.get("snr_db") is not None})
    for r in rows:
        if r["status"] == "ok":
            r["si_sdri_by_snr"] = {f"{s:g}": M.mean_of([c for c in r["clips"] if c["snr_db"] == s],
                                                     ["si_sdri"])["si_sdri"] for s in snrs}
    return {"n": len(items), "metrics": mets, "snrs": snrs, "rows": rows,
            "speakers": [it.get("speaker") for it in items]}


# ----------------------------------------------------------------------------- input level
LEVELS_DB = (-60, -50, -40, -30, -20)


def levels(d: Path, limit=None, log=print, jobs=1) -> dict:
    """The enhancement clips with the noisy input scaled to each mixture RMS in `LEVELS_DB`
    (dBFS; the valsets and the models before the sixth session's training sit at −35…−10).
    Why: a recording's level is whatever its microphone gave, and a model that only works at
    its training levels fails on quiet files. PESQ-WB and SI-SDRi against the clean target
    (both ignore the output's overall level); the codec is scored like an enhancer (noisy in,
    decoded out at 3 kbit/s)."""
    items = load_items(d, ("input", "target"), limit)
    systems = _enhance_systems() + [("audioe2e codec 3 kbit/s (decoded)", _ours_codec_at(3.0))]
    log(f"input levels: {len(items)} clips at {', '.join(f'{v:g}' for v in LEVELS_DB)} dBFS")
    items = [with_mets([it], "", ["pesq_wb", "si_sdri"])[0] for it in items]
    return {"n": len(items), "levels": list(LEVELS_DB),
            "rows": _by_level(items, systems, eval_enhance, ("pesq_wb", "si_sdri"), log, jobs)}


def separate_levels(d: Path, limit=None, log=print, jobs=1) -> dict:
    """The separation mixtures at each mixture RMS in `LEVELS_DB`, for the same reason as
    `levels`: SI-SDRi of both separators (the fixed-STFT twin was trained at −35…−10 only)."""
    items = load_items(d, ("input", "s1", "s2"), limit)
    systems = [("audioe2e separator (learned front-end)", _model("separator", ours.separate)),
               ("audioe2e separator-stft (fixed STFT twin)", _model("separator-stft", ours.separate))]
    log(f"separation input levels: {len(items)} mixtures at {', '.join(f'{v:g}' for v in LEVELS_DB)} dBFS")
    return {"n": len(items), "levels": list(LEVELS_DB),
            "rows": _by_level(items, systems, eval_separate, ("si_sdri",), log, jobs)}


def _by_level(items: list[dict], systems: list, evaluate: Callable, keys: tuple[str, ...], log, jobs) -> list[dict]:
    """One row per system: `keys` at every level of `LEVELS_DB`, the input scaled to that
    mixture RMS (references untouched: every metric here ignores the output's level)."""
    scaled = {level: [dict(it, input=(it["input"] * (10 ** (level / 20) / (rms(it["input"]) + 1e-12)))
                           .astype(np.float32)) for it in items] for level in LEVELS_DB}
    rows = []
    for name, setup in systems:
        setup_once = functools.cache(setup)  # one model load for all levels
        row: dict = {"system": name, "status": "ok"}
        for level in LEVELS_DB:
            r = run_system(f"{name} at {level} dBFS", setup_once, scaled[level], evaluate, log, jobs)
            if r["status"] != "ok":
                row = {"system": name, "status": r["status"]}
                break
            row.update({f"{k} {level}": r[k] for k in keys})
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- separation
def separate(d: Path, limit=None, log=print, jobs=1) -> dict:
    items = load_items(d, ("input", "s1", "s2"), limit)
    systems = [
        ("mixture (no processing)", _peer(lambda it: np.stack([it["input"]] * 2))),
        ("audioe2e separator (learned front-end)", _model("separator", ours.separate)),
        ("audioe2e separator-stft (fixed STFT twin)", _model("separator-stft", ours.separate)),
        ("oracle IRM (upper bound)", _peer(lambda it: peers.oracle_masks(it["input"], np.stack([it["s1"], it["s2"]]), "irm"))),
        ("oracle IBM (upper bound)", _peer(lambda it: peers.oracle_masks(it["input"], np.stack([it["s1"], it["s2"]]), "ibm"))),
    ]

    log(f"separation: {len(items)} clips")
    rows = [run_system(n, s, items, eval_separate, log, jobs) for n, s in systems]
    pairs = sorted({it.get("pair", "unknown") for it in items})
    for r in rows:
        if r["status"] == "ok":
            for p in pairs:
                r[f"si_sdri_{p}"] = M.mean_of([c for c in r["clips"] if c["pair"] == p], ["si_sdri"])["si_sdri"]
    return {"n": len(items), "pairs": {p: sum(it.get("pair", "unknown") == p for it in items) for p in pairs},
            "rows": rows}


# ----------------------------------------------------------------------------- codec
# (kbps, variable bitrate[, postfilter]): `encode`'s default (variable) at four rates, and fixed
# stages at 2.5, 3 and 6 beside it. 2.5 sits next to 3: an entropy-coded rate moves with the
# weights, and two points this close let a retrained codec be compared with the shipped one at
# equal measured rate. `decode` postfilters by default; one row shows 3 kbit/s without it.
OURS_MODES = ((1.5, True), (2.5, True), (3.0, True), (6.0, True), (2.5, False), (3.0, False), (6.0, False),
              (3.0, True, False))


def _codec_label(kbps: float, vbr: bool, post: bool = True) -> str:
    return (f"audioe2e codec {kbps:g} kbit/s" + ("" if vbr else ", fixed stages")
            + ("" if post else ", no postfilter"))


def _ours_codec(mode: tuple, cache: dict) -> Callable:
    """All bitrates of a clip come from one encoder run (see ours.codec_roundtrips)."""
    def setup():
        if "model" not in cache:
            cache["model"] = ours.load("codec")

        def fn(it):
            key = (it["id"], it["cond"])
            if key not in cache:
                cache[key] = ours.codec_roundtrips(cache["model"], it["input"], OURS_MODES)
            y, size, head, _ = cache[key][mode]
            return y, size, size - head
        return fn
    return setup


def _ours_codec_at(kbps: float) -> Callable:
    """The codec as an enhancer: noisy clip in, decoded `.ae2` out (time-aligned)."""
    def setup():
        model = ours.load("codec")
        return lambda it: ours.codec_roundtrips(model, it["input"], ((kbps, True),))[(kbps, True)][0][: len(it["input"])]
    return setup


def codec(d: Path, clips: int | None = 24, dnsmos=False, log=print, jobs=1,
          dnsmos_only: tuple[str, ...] = ()) -> dict:
    """Clean condition: the first `clips` clean targets; noisy: the first `clips` inputs at
    0–15 dB SNR. Every system is scored against the clean target."""
    mets = ["pesq_wb", "pesq_nb", "stoi", "si_sdr"] + (["dnsmos"] if dnsmos else [])
    items = load_items(d, ("input", "target"))
    noisy = [it for it in items if it.get("snr_db") is not None and 0 <= it["snr_db"] <= 15]
    out: dict = {"metrics": mets}
    cache: dict = {}
    for cond, sel, key in (("clean", items[:clips] if clips else items, "target"),
                           ("noisy", noisy[:clips] if clips else noisy, "input")):
        log(f"codec on {cond} input: {len(sel)} clips")
        conds = [{**it, "input": it[key], "cond": cond} for it in sel]
        systems = [("uncoded input", _peer(lambda it: (it["input"], None, None)))] if cond == "noisy" else []
        systems += [(f"Opus {k} kbit/s", _peer(lambda it, k=k: peers.opus(it["input"], RATE, k))) for k in (6, 8, 12)]
        systems += [(f"Codec 2 {b} bit/s", _peer(lambda it, b=b: peers.codec2(it["input"], RATE, b)))
                    for b in (3200, 1600)]
        systems += [(_codec_label(*m), _ours_codec(m, cache)) for m in OURS_MODES]
        rows = []
        for name, setup in systems:
            r = run_system(name, setup, with_mets(conds, name, mets, dnsmos_only), eval_codec, log, jobs)
            if r["status"] == "ok" and r["clips"][0]["bytes"] is not None:
                secs = sum(len(it["input"]) for it in conds) / RATE
                r["kbps_file"] = sum(c["bytes"] for c in r["clips"]) * 8 / secs / 1000
                r["kbps_stream"] = sum(c["stream_bytes"] for c in r["clips"]) * 8 / secs / 1000
            r.pop("rtf", None)  # one encoder run serves all our rows; see the speed table
            rows.append(r)
        out[cond] = {"n": len(sel), "rows": rows}
    return out
