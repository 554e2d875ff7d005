"""`audioe2e corpus pack`: a small portable subset of one split of a built corpus.

Why: the corpus is built here from Debian packages and TTS voices (~35 min, needs the package
archive), while a lent GPU machine can reach nothing and gets a few tens of MB of files. For
mixture training, speaker variety matters more than hours per speaker, so the pack keeps every
speaker of the split with up to `speaker_seconds` each (utterances in a seeded random order)
plus `noise_minutes` of noise cut from many tracks, as 16-bit FLAC (lossless, about half the
size of WAV) with a manifest in the corpus format, so `train run --corpus PACK` works there.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import RATE
from .manifest import read_manifest


def pack_corpus(corpus: Path, out: Path, split: str = "train", speaker_seconds: float = 20.0,
                noise_minutes: float = 5.0, noise_piece_seconds: float = 20.0, seed: int = 0) -> dict:
    """Write the subset to OUT (which must not exist; built in a temp folder, then renamed, so
    a failed pack leaves nothing behind). Returns a summary (files, speakers, hours, MB)."""
    corpus, out = Path(corpus), Path(out)
    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found (build it with `audioe2e corpus build`)")
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    rows = [r for r in read_manifest(corpus) if r["split"] == split]
    if not rows:
        raise ValueError(f"{corpus} has no '{split}' split")
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[dict]] = {}
    noise = []
    for r in rows:
        (by_speaker.setdefault(r["speaker"], []) if r["kind"] == "speech" else noise).append(r)
    tmp = out.with_name(out.name + f".part{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    kept: list[dict] = []

    def write(r: dict, audio: np.ndarray, name: str):
        path = f"{r['kind']}/{name}.flac"
        (tmp / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp / path, audio, RATE, format="FLAC", subtype="PCM_16")
        kept.append({**r, "path": path, "duration": round(len(audio) / RATE, 3)})

    try:
        for spk in sorted(by_speaker):
            utts, total = by_speaker[spk], 0.0
            for i in rng.permutation(len(utts)):
                if total >= speaker_seconds:
                    break
                audio, rate = sf.read(corpus / utts[i]["path"], dtype="int16")
                if rate != RATE:
                    raise ValueError(f"{utts[i]['path']}: corpus audio must be {RATE} Hz, got {rate}")
                write(utts[i], audio, f"{len(kept):06d}")
                total += len(audio) / RATE
        budget = noise_minutes * 60
        piece = int(noise_piece_seconds * RATE)
        for i in rng.permutation(len(noise)):
            if budget <= 0:
                break
            audio, _ = sf.read(corpus / noise[i]["path"], dtype="int16", always_2d=True)
            audio = audio[:, 0]
            start = int(rng.integers(0, max(1, len(audio) - piece + 1)))
            cut = audio[start: start + piece]
            write(noise[i], cut, f"{len(kept):06d}")
            budget -= len(cut) / RATE
        (tmp / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    speech = [r for r in kept if r["kind"] == "speech"]
    return {"files": len(kept), "speakers": len(by_speaker),
            "speech_hours": round(sum(r["duration"] for r in speech) / 3600, 3),
            "noise_hours": round(sum(r["duration"] for r in kept if r["kind"] != "speech") / 3600, 3),
            "mb": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6, 1)}
