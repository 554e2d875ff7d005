"""Per-file reports, the batch summary, the JSON report and the progress bar (all on stderr,
except the JSON report, which goes to stdout unless stdout carries audio)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

PROGRESS_MIN_SECONDS = 10.0  # shorter inputs get no progress bar


@dataclass
class FileReport:
    input: str
    outputs: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | failed | skipped
    error: Optional[str] = None
    duration_s: Optional[float] = None
    seconds: Optional[float] = None
    realtime_factor: Optional[float] = None
    clipped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    traceback: Optional[str] = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("traceback")
        extra = d.pop("extra")
        d.update(extra)
        for k in ("duration_s", "seconds", "realtime_factor"):
            if d[k] is not None:
                d[k] = round(d[k], 6)
        return d


def exit_code(reports: list[FileReport]) -> int:
    """0 when every file is ok or skipped, 1 when some failed."""
    return 1 if any(r.status == "failed" for r in reports) else 0


def json_report(command: str, reports: list[FileReport], **meta) -> str:
    counts = {s: sum(r.status == s for r in reports) for s in ("ok", "failed", "skipped")}
    return json.dumps({"command": command, **meta, **counts,
                       "files": [r.to_dict() for r in reports]}, indent=2)


class ScriptArgumentParser(argparse.ArgumentParser):
    """argparse for the developer scripts (`python -m audioe2e.bench.run`, `.bench.ablation`, ...).

    Why: argparse prints the whole usage block before its error; the CLI's rule is one line on
    stderr and a non-zero exit, and a usage error in `make bench` should read the same."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (--help for usage)\n")


def print_error(where: str, reason: str):
    print(f"error: {where}: {reason}", file=sys.stderr, flush=True)


def print_file_line(r: FileReport, quiet: bool):
    """One line per file on stderr: errors always, successes unless quiet."""
    if r.status == "failed":
        print_error(r.input, r.error or "failed")
        if r.traceback:
            print(r.traceback, file=sys.stderr, end="")
    elif not quiet:
        if r.status == "skipped":
            print(f"skipped {r.input} (output exists)", file=sys.stderr)
            return
        speed = f", {1 / r.realtime_factor:.1f}x real time" if r.realtime_factor else ""
        clip = f", {r.clipped} samples clipped" if r.clipped else ""
        outs = ", ".join("<stdout>" if o == "-" else o for o in r.outputs)
        print(f"ok {r.input} -> {outs} ({r.duration_s or 0:.2f} s{speed}{clip})",
              file=sys.stderr)


def print_summary(reports: list[FileReport], quiet: bool):
    """A closing line for batches; always names the failed files."""
    failed = [r.input for r in reports if r.status == "failed"]
    if len(reports) <= 1:
        return
    ok = sum(r.status == "ok" for r in reports)
    skipped = sum(r.status == "skipped" for r in reports)
    if failed:
        print(f"{len(failed)} of {len(reports)} files failed: {', '.join(failed)}", file=sys.stderr)
    elif not quiet:
        print(f"{ok} files done" + (f", {skipped} skipped" if skipped else ""), file=sys.stderr)


class Progress:
    """A rich progress bar on stderr in seconds of audio, with the speed as x real time.

    Shown only when enabled, stderr is a terminal and the input is long (or of unknown
    length); otherwise every method is a no-op."""

    def __init__(self, label: str, total_s: Optional[float], enabled: bool = True):
        self._p = None
        if not enabled or not sys.stderr.isatty():
            return
        if total_s is not None and total_s < PROGRESS_MIN_SECONDS:
            return
        import time

        from rich.console import Console
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn

        self._t0 = time.perf_counter()
        self._clock = time.perf_counter
        self._p = RichProgress(TextColumn("{task.description}"), BarColumn(),
                               TextColumn("{task.completed:.1f}/{task.fields[tot]} s"),
                               TextColumn("{task.fields[speed]}"),
                               console=Console(stderr=True), transient=True)
        self._p.start()
        tot = f"{total_s:.1f}" if total_s else "?"
        self._task = self._p.add_task(label, total=total_s, tot=tot, speed="")

    def update(self, done_s: float):
        if self._p is None:
            return
        dt = self._clock() - self._t0
        speed = f"{done_s / dt:.1f}x real time" if dt > 0 else ""
        self._p.update(self._task, completed=done_s, speed=speed)

    def close(self):
        if self._p is not None:
            self._p.stop()
            self._p = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
