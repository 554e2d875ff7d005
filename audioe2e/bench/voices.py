"""Scores split by the speech source of each clip (real voices, espeak-ng, Kokoro, ...).

A validation draw mixes real recordings with synthetic voices, and one system's lead over
another can differ in sign between them (the tiny enhancer against RNNoise: ahead on espeak-ng
and on the Fish Fillets actor, behind on June's studio recording). The held-out test's unseen
voices are best guessed from the real ones, so `bench.run` and `bench.ablation` report this split.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..corpus.manifest import read_manifest
from .tables import md_table


def clip_voice_sources(speakers: list[str | None], corpus: Path) -> list[str | None]:
    """Each clip's speech source (the corpus manifest's `source` of its speaker), or None
    (no manifest, or a speaker it does not list)."""
    if not (Path(corpus) / "manifest.jsonl").is_file():
        return [None] * len(speakers)
    source = {}
    for r in read_manifest(corpus):
        if r.get("kind") == "speech" and r.get("speaker") is not None:
            source.setdefault(r["speaker"], r.get("source"))
    return [source.get(s) for s in speakers]


def by_voice_source(res: dict, metric: str = "pesq_wb", base: str | None = None,
                    diff: list[str] | None = None) -> list[dict]:
    """Rows for the per-source table (one column per speech source): each run's mean `metric`
    over that source's clips, then each other run (those named in `diff`, default all) minus the
    base run (`base` by name, else the first), paired per clip (mean ± standard error), then a
    `clips` row with the counts. Empty when no clip has a source."""
    voices = res.get("voices") or []
    kinds = sorted({v for v in voices if v})
    if not kinds:
        return []
    rows = []
    ok = [r for r in res["rows"] if r.get("status", "ok") == "ok"]
    for r in ok:
        row = {"system": r["system"]}
        for k in kinds:
            vals = [c[metric] for c, v in zip(r["clips"], voices)
                    if v == k and c.get(metric) is not None and math.isfinite(c[metric])]
            row[k] = f"{statistics.fmean(vals):.2f}" if vals else "–"
        rows.append(row)
    ref = next((r for r in ok if r["system"] == base), ok[0] if ok else None)
    for r in ok:
        if r is ref or (diff is not None and r["system"] not in diff):
            continue
        row = {"system": f"{r['system']} − {ref['system']}"}
        for k in kinds:
            d = [a[metric] - b[metric] for a, b, v in zip(r["clips"], ref["clips"], voices)
                 if v == k and a.get(metric) is not None and b.get(metric) is not None
                 and math.isfinite(a[metric]) and math.isfinite(b[metric])]
            row[k] = (f"{statistics.fmean(d):+.3f} ± {statistics.stdev(d) / math.sqrt(len(d)):.3f}"
                      if len(d) > 1 else "–")
        rows.append(row)
    counts = {"system": "clips"} | {k: str(sum(v == k for v in voices)) for k in kinds}
    return rows + [counts]


def voice_table(res: dict, title: str, metric: str = "pesq_wb", base: str | None = None,
                diff: list[str] | None = None) -> str:
    """`by_voice_source` as a markdown table under `title`; "" when no clip has a source."""
    rows = by_voice_source(res, metric, base, diff)
    return md_table(rows, [k for k in rows[0] if k != "system"], title=title) if rows else ""
