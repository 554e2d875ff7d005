"""Manifest, splits and summary of a built corpus.

The manifest is rebuilt from what is on disk (``OUT/speech/<source>/<speaker>/*.wav`` and
``OUT/noise/<source>/*.wav``) plus two small state files written by the builder:
``.speakers.json`` (gender/lang/license per source+speaker) and ``.state.jsonl`` (which jobs are
done, with piece durations and original sample rate). So a resumed or partial build always ends
with a manifest that matches the files exactly.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from .sources import SYNTH_SOURCES, TRAIN_ONLY_SOURCES, VAL_SPEAKERS, frac

VAL_FRACTION = 0.15
PIECE_RE = re.compile(r"__p\d+$")


def meta_key(kind: str, source: str, speaker: str | None) -> str:
    return f"{kind}/{source}/{speaker}" if speaker else f"{kind}/{source}"


def load_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_manifest(root: str | Path) -> list[dict]:
    """The rows of ROOT/manifest.jsonl (one dict per file: path, kind, source, speaker, split, ...)."""
    text = (Path(root) / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_state(out: Path) -> dict[str, dict]:
    """Job records by out_stem: {"files": [[relpath, seconds], ...], "orig_rate": int}."""
    state: dict[str, dict] = {}
    p = out / ".state.jsonl"
    if p.is_file():
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
                state[rec["stem"]] = rec
            except (ValueError, KeyError):
                continue  # a line cut by an interruption
    return state


def speaker_split(source: str, speaker: str, person: str | None, user_val: set[str]) -> str:
    """Speaker-disjoint split: fixed validation persons, ~15 % of synthetic and user voices."""
    if speaker in VAL_SPEAKERS:
        return "val"
    if source in TRAIN_ONLY_SOURCES:
        return "train"
    if source in SYNTH_SOURCES:
        return "val" if frac(person or speaker) < VAL_FRACTION else "train"
    if source.startswith("user-"):
        return "val" if speaker in user_val else "train"
    return "train"


def user_val_speakers(speakers: set[tuple[str, str]]) -> set[str]:
    """~15 % of user speakers by hash, but with >= 2 speakers at least one in each split
    (a single speaker always trains)."""
    names = sorted({s for src, s in speakers if src.startswith("user-")}, key=frac)
    if len(names) < 2:
        return set()
    val = {s for s in names if frac(s) < VAL_FRACTION}
    return val - {names[-1]} if val else {names[0]}


def noise_split(source: str, rel_stem: str) -> str:
    """By hash of the source track, so pieces of one track stay in one split."""
    track = PIECE_RE.sub("", rel_stem)
    return "val" if frac(f"{source}/{track}") < VAL_FRACTION else "train"


def build_manifest(out: Path) -> list[dict]:
    """Scan OUT and write OUT/manifest.jsonl (sorted by path); return the entries."""
    out = Path(out)
    speakers = load_json(out / ".speakers.json", {})
    state = load_state(out)
    durations = {f: (d, rec.get("orig_rate")) for rec in state.values() for f, d in rec.get("files", [])}
    files = sorted(out.glob("speech/*/*/*.wav")) + sorted(out.glob("noise/*/*.wav"))
    found_speakers = {(f.parts[-3], f.parts[-2]) for f in files if f.parts[-4] == "speech"}
    user_val = user_val_speakers(found_speakers)
    entries = []
    for f in files:
        rel = f.relative_to(out).as_posix()
        kind = rel.split("/")[0]
        if kind == "speech":
            _, source, speaker, name = rel.split("/")
        else:
            _, source, name = rel.split("/")
            speaker = None
        meta = speakers.get(meta_key(kind, source, speaker), {})
        dur, orig = durations.get(rel, (None, None))
        if dur is None:
            try:
                dur = sf.info(str(f)).duration
            except RuntimeError:
                continue
        split = (speaker_split(source, speaker, meta.get("person"), user_val) if kind == "speech"
                 else noise_split(source, name[:-4]))
        entries.append({
            "path": rel, "kind": kind, "speaker": speaker,
            "gender": meta.get("gender") if kind == "speech" else None,
            "lang": meta.get("lang") if kind == "speech" else None,
            "source": source, "split": split, "duration": round(float(dur), 3), "rate": 16000,
            "orig_rate": orig or meta.get("orig_rate") or None,
            "license": meta.get("license", "unknown"),
        })
    tmp = out / "manifest.jsonl.part"
    with open(tmp, "w") as fh:
        for e in entries:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    os.replace(tmp, out / "manifest.jsonl")
    return entries


def summarize(entries: list[dict]) -> dict:
    """Speakers, files and hours per split and kind, plus per source."""
    agg: dict = defaultdict(lambda: {"files": 0, "hours": 0.0, "speakers": set()})
    src: dict = defaultdict(lambda: {"files": 0, "hours": 0.0, "speakers": set(), "split": set()})
    for e in entries:
        for a in (agg[(e["split"], e["kind"])], src[(e["kind"], e["source"])]):
            a["files"] += 1
            a["hours"] += e["duration"] / 3600
            if e["speaker"]:
                a["speakers"].add(e["speaker"])
        src[(e["kind"], e["source"])]["split"].add(e["split"])
    table = [{"split": s, "kind": k, "speakers": len(v["speakers"]), "files": v["files"],
              "hours": round(v["hours"], 3)} for (s, k), v in sorted(agg.items())]
    sources = [{"kind": k, "source": s, "speakers": len(v["speakers"]), "files": v["files"],
                "hours": round(v["hours"], 3), "splits": sorted(v["split"])}
               for (k, s), v in sorted(src.items())]
    return {"splits": table, "sources": sources,
            "total_hours": round(sum(e["duration"] for e in entries) / 3600, 3),
            "files": len(entries)}
