"""`evaluate_dirs` (behind `audioe2e eval`): pair two folders of audio files and score every pair.

Why a module of its own: pairing files by relative path or stem (enhancement, or separation
with `<stem>_s<n>` / `s<n>/` sources and PIT), reading and trimming them, and printing or
writing the table is file handling, apart from the metrics themselves.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..inputs import AUDIO_EXTS, UsageError
from .perceptual import _PKG, available, missing, resample
from .scoring import METRICS, mean_of, score
from .sisdr import pit_si_sdr

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
