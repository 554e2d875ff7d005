"""Input expansion and output naming: the file-level half of the I/O contract (DESIGN §1).

Inputs: files, directories (searched recursively for audio files), globs (expanded here too,
for shells that do not) and `-` (stdin, at most once). A problem with one argument (missing
file, empty directory, glob matching nothing) becomes an `Input` with `error` set, so a batch
reports it and goes on with the rest.

Outputs (`plan_outputs`), per task:
- `-o -`: stdout, exactly one input. `separate` writes one WAV with one channel per speaker.
- `-o DIR`: several inputs, any input from a directory, an existing directory, a path ending
  in `/`, or a path without a suffix. Names come from the template: `{stem}.wav` (enhance,
  decode), `{stem}.ae2` (encode), `{stem}_s{n}.wav` (separate; `--template` overrides, `{n}`
  counts speakers from 1). Files found under a directory argument keep their sub-folder
  below DIR, so equal stems in different folders do not collide.
- `-o FILE` (one input, a path with a suffix): that file. `separate` writes one file with one
  channel per speaker.
- no `-o`: stdin goes to stdout; a file gets its outputs beside it: `{stem}_enhanced.wav`,
  `{stem}_s{n}.wav`, `{stem}.ae2`, `{stem}_decoded.wav` (or `--template`).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

AUDIO_EXTS = (".wav", ".flac", ".ogg")
CODE_EXTS = (".ae2",)
TASKS = ("enhance", "separate", "encode", "decode")
DIR_TEMPLATES = {"enhance": "{stem}.wav", "separate": "{stem}_s{n}.wav",
                 "encode": "{stem}.ae2", "decode": "{stem}.wav"}
BESIDE_TEMPLATES = {"enhance": "{stem}_enhanced.wav", "separate": "{stem}_s{n}.wav",
                    "encode": "{stem}.ae2", "decode": "{stem}_decoded.wav"}


class UsageError(ValueError):
    """Options that cannot work together (exit code 2)."""


@dataclass(frozen=True)
class Input:
    path: str                    # a file path, or "-" for stdin
    subdir: str = ""             # folder relative to the directory argument it came from
    from_dir: bool = False       # found by expanding a directory (so -o names a folder)
    error: Optional[str] = None  # set when the argument could not be used

    @property
    def stem(self) -> str:
        return "stdin" if self.path == "-" else Path(self.path).stem

    @property
    def display(self) -> str:
        return "<stdin>" if self.path == "-" else self.path


def _walk(d: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in exts and p.is_file())


def expand_inputs(args: Iterable[str], exts: tuple[str, ...] = AUDIO_EXTS) -> list[Input]:
    """Expand command-line arguments into inputs (see module docstring)."""
    out: list[Input] = []
    seen: set[str] = set()

    def add(inp: Input):
        key = inp.path if inp.path == "-" or inp.error else os.path.realpath(inp.path)
        if key not in seen or inp.error:
            seen.add(key)
            out.append(inp)

    for arg in args:
        p = Path(arg)
        if arg == "-":
            if "-" in seen:
                raise UsageError("'-' (stdin) can be given only once")
            add(Input("-"))
        elif p.is_dir():
            files = _walk(p, exts)
            if not files:
                add(Input(arg, error=f"no audio files in {arg}" if exts == AUDIO_EXTS
                          else f"no {'/'.join(exts)} files in {arg}"))
            for f in files:
                rel = f.parent.relative_to(p)
                add(Input(str(f), subdir="" if rel == Path(".") else str(rel), from_dir=True))
        elif p.exists() or not any(c in arg for c in "*?["):
            add(Input(arg, error=None if p.exists() else "no such file"))
        else:
            found: list[tuple[Path, bool]] = []  # (file, found inside a matched directory)
            for m in sorted(glob.glob(arg, recursive=True)):
                mp = Path(m)
                if mp.is_dir():
                    found += [(f, True) for f in _walk(mp, exts)]
                elif mp.suffix.lower() in exts:
                    found.append((mp, False))
            if not found:
                add(Input(arg, error="no audio files match this pattern"))
            for f, in_dir in found:
                add(Input(str(f), from_dir=in_dir))
    return out


def _render(template: str, stem: str, n: Optional[int] = None) -> str:
    try:
        name = template.format(stem=stem, n=n if n is not None else 1)
    except (KeyError, IndexError, ValueError) as e:
        raise UsageError(f"bad --template {template!r}: {e} (fields: {{stem}}, {{n}})") from None
    if not name or os.path.isabs(name):
        raise UsageError(f"bad --template {template!r}: must give a relative file name")
    return name


def output_mode(inputs: list[Input], output: Optional[str]) -> str:
    """'stdout', 'file', 'dir' or 'beside' (see module docstring)."""
    if output == "-" or (output is None and len(inputs) == 1 and inputs[0].path == "-"):
        if len(inputs) != 1:
            raise UsageError("-o - (stdout) takes exactly one input")
        return "stdout"
    if output is None:
        if any(i.path == "-" for i in inputs):
            raise UsageError("stdin input with other inputs needs -o DIR")
        return "beside"
    p = Path(output)
    if (p.is_dir() or output.endswith(("/", os.sep)) or len(inputs) > 1
            or any(i.from_dir for i in inputs) or not p.suffix):
        if p.exists() and not p.is_dir():
            raise UsageError(f"-o {output}: several inputs need a directory, not a file")
        return "dir"
    return "file"


def plan_outputs(inputs: list[Input], output: Optional[str], task: str,
                 template: Optional[str] = None, n_sources: int = 2) -> tuple[str, list[list[str]]]:
    """The output paths of every input, in order; `["-"]` for stdout. Returns (mode, paths)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    if template is not None and task == "separate" and "{n}" not in template:
        raise UsageError("--template for separate needs {n} (the speaker number)")
    mode = output_mode(inputs, output)
    if template is not None and mode in ("stdout", "file"):
        raise UsageError("--template applies to -o DIR or to outputs beside the inputs")
    plans: list[list[str]] = []
    for inp in inputs:
        if mode == "stdout":
            plans.append(["-"])
            continue
        if mode == "file":
            plans.append([output])
            continue
        tpl = template or (DIR_TEMPLATES if mode == "dir" else BESIDE_TEMPLATES)[task]
        base = Path(output) / inp.subdir if mode == "dir" else Path(inp.path).parent
        ns = range(1, n_sources + 1) if task == "separate" else [None]
        plans.append([str(base / _render(tpl, inp.stem, n)) for n in ns])
    return mode, plans
