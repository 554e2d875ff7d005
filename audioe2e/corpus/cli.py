"""``audioe2e corpus`` sub-commands: build the training corpus, show its summary."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..cli import fail

app = typer.Typer(help="Build the speech + noise training corpus (Debian packages, TTS voices, your folders).",
                  no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Build the speech + noise training corpus."""


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"corpus: {summary['files']} files, {summary['total_hours']:.2f} h")
    for c in ("split", "kind", "speakers", "files", "hours"):
        t.add_column(c, justify="left" if c in ("split", "kind") else "right")
    for r in summary["splits"]:
        t.add_row(r["split"], r["kind"], str(r["speakers"]), str(r["files"]), f"{r['hours']:.2f}")
    Console().print(t)


@app.command()
def build(
    out: Path = typer.Option(Path("corpus"), "--out", "-o", help="Corpus folder (created; resumed if it exists)."),
    speech: Optional[List[Path]] = typer.Option(None, "--speech", help="Folder of speech; speaker = first sub-folder (repeatable)."),
    noise: Optional[List[Path]] = typer.Option(None, "--noise", help="Folder of noise files (repeatable)."),
    install: bool = typer.Option(True, "--install/--no-install", help="apt-get install missing Debian packages (as root)."),
    debian: bool = typer.Option(True, "--debian/--no-debian", help="Use the Debian packages and TTS voices (else only your folders)."),
    espeak_minutes: float = typer.Option(30.0, help="Minutes of espeak-ng speech (many voices)."),
    flite_minutes: float = typer.Option(10.0, help="Minutes of flite + festival speech."),
    kokoro_minutes: float = typer.Option(20.0, help="Minutes of Kokoro-82M speech (~1x real time to make on one core)."),
    kokoro_extra_minutes: float = typer.Option(0.0, help="Minutes of more Kokoro voices for training only (never in validation)."),
    seed: int = typer.Option(0, help="Seed of the synthetic voices and texts."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Decode, trim and split all sources into OUT/{speech,noise}; write OUT/manifest.jsonl and OUT/summary.json."""
    from .build import build_corpus
    for d in (speech or []) + (noise or []):
        if not d.is_dir():
            fail(f"--speech/--noise: not a folder: {d}", 2)
    summary = build_corpus(out, speech or (), noise or (), install=install, kokoro_minutes=kokoro_minutes,
                           kokoro_extra_minutes=kokoro_extra_minutes,
                           espeak_minutes=espeak_minutes, flite_minutes=flite_minutes, seed=seed, debian=debian)
    if as_json:
        print(json.dumps(summary, indent=1))
    else:
        print_summary(summary)


@app.command()
def summary(out: Path = typer.Option(Path("corpus"), "--out", "-o", help="Corpus folder."),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the summary of an existing corpus (from OUT/manifest.jsonl)."""
    from .manifest import read_manifest, summarize
    if not (out / "manifest.jsonl").is_file():
        fail(f"no manifest in {out}; run `audioe2e corpus build` first", 2)
    s = summarize(read_manifest(out))
    print(json.dumps(s, indent=1)) if as_json else print_summary(s)


@app.command()
def pack(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the subset (must not exist)."),
    corpus: Path = typer.Option(Path("corpus"), "--corpus", help="Built corpus folder."),
    split: str = typer.Option("train", help="Which split to pack."),
    speaker_seconds: float = typer.Option(20.0, help="Seconds of speech kept per speaker (every speaker is kept)."),
    noise_minutes: float = typer.Option(5.0, help="Minutes of noise, cut from many tracks."),
    seed: int = typer.Option(0),
) -> None:
    """A small FLAC subset of one split (every speaker, a little of each) with its own manifest,
    to train on a machine that cannot build the corpus (`train run --corpus OUT`)."""
    from .pack import pack_corpus
    if speaker_seconds <= 0 or noise_minutes < 0:
        fail("--speaker-seconds must be > 0 and --noise-minutes ≥ 0", 2)
    try:
        s = pack_corpus(corpus, out, split, speaker_seconds, noise_minutes, seed=seed)
    except (OSError, ValueError) as e:  # no corpus, OUT exists, no such split
        fail(str(e), 2)
    typer.echo(json.dumps(s))
