"""`python -m audioe2e.bench.curves --run NAME=RUN_DIR ... [--metric si_sdri]`: twins' learning
curves side by side, step for step, on one validation set.

Why: a front-end ablation is fair only at equal training; the shipped separator has trained
far longer than its fixed-STFT twin can in one session, so the comparison that means
something is each run's validation score at the same step. A run's log may span several
valsets (the corpus was rebuilt between sessions); `log.jsonl` notes each change as
"valsets rewritten (OLD -> NEW: ...)", so every validation row is attributed to the valset it
was measured on, and only rows of the chosen valset (default: the newest run's current one)
are compared.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..checkpoint import load_weights
from ..report import ScriptArgumentParser

_REWRITE = re.compile(r"valsets rewritten \((\w*) -> (\w+)")


def val_rows_by_valset(log_rows: list[dict], current_id: str) -> dict[str, list[dict]]:
    """{valset id: [{"step": …, **val metrics}, …]} for one run's log. Rows before a
    'valsets rewritten (A -> B' note belong to A, after it to B; rows after the last note
    (or all of them, in a log with none) to `current_id`, the id in the run's checkpoint.
    Older notes that name no ids make the rows before them 'unknown-N'."""
    changes = []
    for i, r in enumerate(log_rows):
        note = r.get("note", "")
        if "valsets rewritten" in note:
            m = _REWRITE.search(note)
            changes.append((i, m.group(1) if m else f"unknown-{len(changes)}"))
    out: dict[str, list[dict]] = {}
    for i, r in enumerate(log_rows):
        if "val" not in r:
            continue
        later = [old for j, old in changes if j > i]
        vid = later[0] if later else current_id
        out.setdefault(vid, []).append({"step": r["step"], **r["val"]})
    return out


def load_run_curves(run: Path) -> tuple[str, dict[str, list[dict]]]:
    """(current valset id, curves by valset id) of a run folder (log.jsonl + last.safetensors)."""
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if l.strip()]
    current = load_weights(run / "last.safetensors")[2].get("val_id", "")
    return current, val_rows_by_valset(log, current)


def compare(runs: dict[str, Path], metric: str, valset: str | None = None) -> dict:
    loaded = {name: load_run_curves(p) for name, p in runs.items()}
    vid = valset or list(loaded.values())[-1][0]
    curves = {name: {r["step"]: r[metric] for r in c.get(vid, []) if metric in r} for name, (_, c) in loaded.items()}
    steps = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
    return {"valset": vid, "metric": metric, "steps": steps,
            "rows": [{"step": s, **{name: curves[name][s] for name in curves}} for s in steps]}


def to_markdown(res: dict, names: list[str]) -> str:
    """One row per shared step; with two or more runs a last column `first − second`."""
    diff = len(names) > 1
    heads = names + ([f"{names[0]} − {names[1]}"] if diff else [])
    lines = [f"{res['metric']} on valset {res['valset']}, at the steps every run validated", "",
             "| step | " + " | ".join(heads) + " |", "|---:|" + "---:|" * len(heads)]
    for r in res["rows"]:
        cells = [f"{r[n]:.2f}" for n in names] + ([f"{r[names[0]] - r[names[1]]:+.2f}"] if diff else [])
        lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = ScriptArgumentParser(prog="python -m audioe2e.bench.curves", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="A run folder with log.jsonl and last.safetensors. Repeat (first − second is shown).")
    ap.add_argument("--metric", default="si_sdri")
    ap.add_argument("--valset", default=None, help="Valset id (default: the last run's current one).")
    ap.add_argument("--out", type=Path, default=None, help="Also write OUT/curves.md and OUT/curves.json.")
    a = ap.parse_args(argv)
    runs = {}
    for spec in a.run:
        name, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "log.jsonl").is_file() or not (Path(path) / "last.safetensors").is_file():
            print(f"error: --run {spec}: need NAME=RUN_DIR with log.jsonl and last.safetensors", file=sys.stderr)
            return 2
        runs[name] = Path(path)
    try:
        res = compare(runs, a.metric, a.valset)
    except (ValueError, KeyError, OSError) as e:  # a corrupt log line or checkpoint header
        print(f"error: cannot read the runs' logs or checkpoints: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if not res["steps"]:
        print(f"error: the runs share no validation step on valset {res['valset']}", file=sys.stderr)
        return 1
    md = to_markdown(res, list(runs))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "curves.md").write_text(md)
        (a.out / "curves.json").write_text(json.dumps(res, indent=1) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
