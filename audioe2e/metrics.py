"""Objective speech metrics for `audioe2e eval` and the bench: SI-SDR(i), PIT, PESQ, STOI, DNSMOS.

Why one module: the bench, `eval` and training validation must compute the same numbers the
same way. SI-SDR is numpy (no dependency); PESQ (`pesq`), STOI/eSTOI (`pystoi`) and DNSMOS
(`speechmos`) are optional: when a package is missing the metric returns None and
`missing(name)` says why, so callers print "n/a" instead of failing. Signals are 1-D float
arrays `[T]`; PESQ, STOI and DNSMOS resample to 16 kHz (PESQ-NB to 8 kHz) with soxr.
`evaluate_dirs` (behind `audioe2e eval`) pairs two folders of files and scores every pair.
"""
from __future__ import annotations

import importlib
import itertools
import re
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from .inputs import AUDIO_EXTS, UsageError

EPS = 1e-8
_NOTES: dict[str, str] = {}


# ----------------------------------------------------------------------------- SI-SDR
def si_sdr(est: np.ndarray, ref: np.ndarray) -> float | np.ndarray:
    """Scale-invariant SDR in dB over the last axis (Le Roux et al. 2019), zero-mean.

    `est`, `ref`: `[..., T]`; returns a float for 1-D input, else an array `[...]`.
    SI-SDR = 10 log10(|a·ref|² / |est − a·ref|²) with a = <est, ref> / |ref|²."""
    est = np.asarray(est, np.float64)
    ref = np.asarray(ref, np.float64)
    est = est - est.mean(-1, keepdims=True)
    ref = ref - ref.mean(-1, keepdims=True)
    a = (est * ref).sum(-1, keepdims=True) / ((ref * ref).sum(-1, keepdims=True) + EPS)
    target = a * ref
    noise = est - target
    out = 10 * np.log10(((target ** 2).sum(-1) + EPS) / ((noise ** 2).sum(-1) + EPS))
    return float(out) if out.ndim == 0 else out


def si_sdri(est: np.ndarray, ref: np.ndarray, mix: np.ndarray) -> float | np.ndarray:
    """SI-SDR improvement over the unprocessed input `mix`, in dB."""
    return si_sdr(est, ref) - si_sdr(mix, ref)


def pit_si_sdr(est: np.ndarray, ref: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Permutation-invariant SI-SDR: est `[S, T]`, ref `[S, T]` → (mean dB, perm) where
    `est[perm[i]]` is the estimate of `ref[i]` (the permutation maximising the mean)."""
    est, ref = np.asarray(est), np.asarray(ref)
    if est.shape[0] != ref.shape[0]:
        raise ValueError(f"{est.shape[0]} estimates for {ref.shape[0]} references")
    pair = np.array([[si_sdr(e, r) for e in est] for r in ref])  # [ref, est]
    best, perm = -np.inf, None
    for p in itertools.permutations(range(ref.shape[0])):
        score = float(np.mean([pair[i, j] for i, j in enumerate(p)]))
        if score > best:
            best, perm = score, p
    return best, tuple(int(i) for i in perm)


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


# ----------------------------------------------------------------------------- one pair
METRICS = ("si_sdr", "si_sdri", "pesq_wb", "pesq_nb", "stoi", "estoi", "dnsmos")


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
            out[m] = globals()[m](ref, est, rate)
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


# ----------------------------------------------------------------------------- folders
_SRC_DIR = re.compile(r"^s(\d+)$")
_SRC_SUFFIX = re.compile(r"^(.*)_s(\d+)$")
_EST_SUFFIXES = ("_enhanced", "_decoded")


class EvalError(UsageError):
    """The folders cannot be paired (missing estimates, no references): exit code 2."""


def _key(rel: Path, est: bool) -> tuple[str, Optional[int]]:
    """Relative path → (utterance key, source index or None). Separation files are named
    `<stem>_s1.wav` or live in `s1/` sub-folders; `_enhanced`/`_decoded` suffixes of the
    CLI's beside-the-input names are ignored on estimates."""
    parts = rel.with_suffix("").parts
    m = _SRC_DIR.match(parts[-2]) if len(parts) > 1 else None
    if m:
        return "/".join(parts[:-2] + parts[-1:]), int(m[1])
    m = _SRC_SUFFIX.match(parts[-1])
    if m:
        return "/".join(parts[:-1] + (m[1],)), int(m[2])
    stem = parts[-1]
    for suf in _EST_SUFFIXES if est else ():
        if stem.endswith(suf) and len(stem) > len(suf):
            stem = stem[: -len(suf)]
    return "/".join(parts[:-1] + (stem,)), None


class _Index:
    """Audio files under `root` by (utterance key, source index); `find` tries the exact
    relative key, then the same stem anywhere below `root` if that is unambiguous."""

    def __init__(self, root: Path, est: bool):
        if not root.is_dir():
            raise EvalError(f"not a folder: {root}")
        self.files = {_key(p.relative_to(root), est): p for p in sorted(root.rglob("*"))
                      if p.suffix.lower() in AUDIO_EXTS and p.is_file()}
        self.by_stem: dict = {}
        for (u, s), p in self.files.items():
            self.by_stem.setdefault((u.rsplit("/", 1)[-1], s), []).append(p)

    def find(self, utt: str, src: Optional[int]) -> Optional[Path]:
        if (utt, src) in self.files:
            return self.files[(utt, src)]
        hits = self.by_stem.get((utt.rsplit("/", 1)[-1], src), [])
        return hits[0] if len(hits) == 1 else None


def _read(path: Path, rate: Optional[int], notes: list) -> tuple[np.ndarray, int]:
    """`[C, T]` float32, resampled to `rate` if given and different."""
    import soundfile as sf
    x, r = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.T
    if rate is not None and r != rate:
        notes.append(f"files at {r} Hz resampled to the reference rate {rate} Hz")
        x = np.stack([resample(c, r, rate) for c in x])
        r = rate
    return x, r


def evaluate_dirs(ref, est, mix=None, metrics=("si_sdr", "pesq_wb", "stoi"), json_out: bool = False,
                  csv_path=None, quiet: bool = False, **kw) -> dict:
    """Pair files of `est` with `ref` (and `mix`, the unprocessed inputs, for SI-SDRi) by
    relative path or stem and score them. Enhancement: one ref per est. Separation (refs named
    `<stem>_s<n>` or under `s<n>/`): estimates `<stem>_s<n>` or one multichannel file, scored
    with PIT. Lengths differing → trimmed to the shorter with a warning. Returns
    {task, n_files, metrics, mean, files: [{file, ...}], warnings, notes}; prints a rich table
    on stderr (unless `json_out`/`quiet`) and writes `csv_path` (one row per file + mean).
    Raises EvalError listing the references that have no estimate."""
    json_out = json_out or bool(kw.pop("json", False))
    if kw:
        raise TypeError(f"unexpected arguments: {', '.join(kw)}")
    ref, est = Path(ref), Path(est)
    mets = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    if mix is not None and "si_sdri" not in mets:
        mets.insert(mets.index("si_sdr") + 1 if "si_sdr" in mets else 0, "si_sdri")
    for m in mets:
        if m not in METRICS:
            raise EvalError(f"unknown metric '{m}' (known: {', '.join(METRICS)})")
    refs, ests = _Index(ref, False).files, _Index(est, True)
    mixes = _Index(Path(mix), False) if mix is not None else None
    if not refs:
        raise EvalError(f"no audio files under {ref}")
    warn, notes, rows, missing_est, trimmed = [], [], [], [], []
    if any(s is not None for _, s in refs):  # separation: refs are the sources only
        other = [u for u, s in refs if s is None]
        if other:
            warn.append(f"{len(other)} reference file(s) not named as sources ignored (e.g. {other[0]})")
        refs = {k: p for k, p in refs.items() if k[1] is not None}
    utts: dict[str, list] = {}
    for (u, s) in sorted(refs, key=lambda k: (k[0], k[1] or 0)):
        utts.setdefault(u, []).append(s)
    notes += [f"{m}: {missing(_PKG[m][1])}" for m in mets if not available(m)]
    task = "separate" if any(s is not None for ss in utts.values() for s in ss) else "enhance"
    for u, srcs in utts.items():
        r_list = [_read(refs[(u, s)], None, notes) for s in srcs]
        rate = r_list[0][1]
        R = [x.mean(0) for x, _ in r_list]
        if task == "separate":
            paths = [ests.find(u, s) for s in srcs]
            one = ests.find(u, None)
            multi = _read(one, rate, notes)[0] if one is not None and not all(paths) else None
            if all(paths):
                E = [_read(p, rate, notes)[0].mean(0) for p in paths]
            elif multi is not None and multi.shape[0] == len(srcs):
                E = list(multi)
            else:
                missing_est.append(u)
                continue
        else:
            p = ests.find(u, None)
            if p is None:
                missing_est.append(u)
                continue
            E = [_read(p, rate, notes)[0].mean(0)]
        M = None
        if mix is not None:
            mp = mixes.find(u, None)
            if mp is None:
                warn.append(f"{u}: no mixture under {mix}; SI-SDRi left out")
            else:
                M = _read(mp, rate, notes)[0].mean(0)
        sigs = R + list(E) + ([M] if M is not None else [])
        n = min(x.shape[-1] for x in sigs)
        if any(x.shape[-1] != n for x in sigs):
            trimmed.append(u)
        R, E = np.stack([r[:n] for r in R]), np.stack([e[:n] for e in E])
        M = M[:n] if M is not None else None
        row: dict = {"file": u}
        if task == "separate":
            _, perm = pit_si_sdr(E, R)
            E = E[list(perm)]
            row["perm"] = [i + 1 for i in perm]
        per = [score(R[i], E[i], rate, mets, M) for i in range(len(R))]
        row.update(mean_of(per, per[0].keys()))
        rows.append(row)
    if missing_est:
        show = ", ".join(missing_est[:10]) + (f", … ({len(missing_est)} in all)" if len(missing_est) > 10 else "")
        hint = (f" (separation: expected <stem>_s1.wav … or s1/<stem>.wav …, or one file with "
                f"one channel per speaker)") if task == "separate" else ""
        raise EvalError(f"{len(missing_est)} reference(s) under {ref} have no estimate under {est}"
                        f"{hint}: {show}")
    if trimmed:
        warn.append(f"{len(trimmed)} file(s) differ in length, trimmed to the shorter: "
                    + ", ".join(trimmed[:5]) + (" …" if len(trimmed) > 5 else ""))
    cols = [k for k in rows[0] if k not in ("file", "perm")]
    result = {"task": task, "ref": str(ref), "est": str(est), "mix": None if mix is None else str(mix),
              "n_files": len(rows), "metrics": cols, "mean": mean_of(rows, cols), "files": rows,
              "warnings": warn, "notes": sorted(set(notes))}
    if csv_path:
        _write_csv(csv_path, rows, cols, result["mean"])
    if not quiet:
        _print_table(result, show_rows=not json_out)
    return result


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def _write_csv(path, rows, cols, mean) -> None:
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file"] + cols)
        for r in rows + [{"file": "mean", **mean}]:
            w.writerow([r["file"]] + ["" if r.get(c) is None else f"{r[c]:.4f}" for c in cols])


def _print_table(result: dict, show_rows: bool = True, max_rows: int = 30) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console(stderr=True)
    for w in result["warnings"]:
        con.print(f"warning: {w}", style="yellow", highlight=False)
    for n in result["notes"]:
        con.print(f"note: {n}", highlight=False)
    cols = result["metrics"]
    t = Table("file", *cols, title=f"{result['task']}: {result['n_files']} file(s)")
    rows = result["files"] if show_rows else []
    for r in rows[:max_rows]:
        t.add_row(r["file"], *[_fmt(r.get(c)) for c in cols])
    if len(rows) > max_rows:
        t.add_row(f"… {len(rows) - max_rows} more", *[""] * len(cols))
    t.add_row("mean", *[_fmt(result["mean"].get(c)) for c in cols], style="bold")
    con.print(t)
