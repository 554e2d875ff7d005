"""Copy the tables of a bench run into the README and the model-card notes.

`python -m audioe2e.bench.refresh out/bench/results.md README.md models/*.notes.md`

Why: the published tables must be the ones a bench run printed, not retyped. Each `### TITLE`
section of results.md replaces the table under every heading of a target file whose text is
TITLE (optionally prefixed "Bench: ", any heading level), and a target's "Bench time: ..." line
takes the run's; other prose is left alone, so the text around a table still has to be
checked by hand. Prints what it replaced; exit 2 on bad input.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

HEADING = re.compile(r"^#{2,6}\s+(?:Bench:\s+)?(.*?)\s*$")


def tables_by_title(results_md: str) -> dict[str, list[str]]:
    """`### title` → the table lines that follow it (first table only)."""
    out: dict[str, list[str]] = {}
    title, rows = None, []
    for line in results_md.splitlines() + [""]:
        m = HEADING.match(line)
        if m:
            if title and rows:
                out.setdefault(title, rows)
            title, rows = m.group(1), []
        elif title is not None and line.startswith("|"):
            rows.append(line)
        elif title is not None and rows and not line.startswith("|"):
            out.setdefault(title, rows)
            title, rows = None, []
    return out


def refresh(text: str, tables: dict[str, list[str]]) -> tuple[str, list[str]]:
    """Replace the first table after each matching heading; returns (new text, titles)."""
    lines = text.splitlines()
    done, i = [], 0
    while i < len(lines):
        m = HEADING.match(lines[i])
        if m and m.group(1) in tables:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("|") and not HEADING.match(lines[j]):
                j += 1
            if j < len(lines) and lines[j].startswith("|"):
                k = j
                while k < len(lines) and lines[k].startswith("|"):
                    k += 1
                lines[j:k] = tables[m.group(1)]
                done.append(m.group(1))
                i = j + len(tables[m.group(1)])
                continue
        i += 1
    return "\n".join(lines) + ("\n" if text.endswith("\n") else ""), done


BENCH_TIME = "Bench time:"


def bench_time_line(results_md: str) -> str | None:
    """The run's own "Bench time: ..." line (wall and CPU seconds), if it printed one."""
    return next((l for l in results_md.splitlines() if l.startswith(BENCH_TIME)), None)


def timed_sections(line: str) -> set[str]:
    """The sections a "Bench time: … (codec 72 s, speed 169 s)." line times."""
    return set(re.findall(r"([a-z][\w-]*) \d+ s\b", line.partition("(")[2]))


def refresh_bench_time(text: str, line: str | None) -> tuple[str, bool]:
    """Replace a target's "Bench time:" lines by the run's (a stale one drifted once) — but
    only a line whose sections the run all re-ran: a one-section run that refreshes a single
    table must not stand in for the time of the whole run the other tables come from."""
    if line is None:
        return text, False
    ran = timed_sections(line)
    lines = [line if l.startswith(BENCH_TIME) and timed_sections(l) <= ran else l for l in text.splitlines()]
    new = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return new, new != text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m audioe2e.bench.refresh RESULTS.md TARGET.md [...]", file=sys.stderr)
        return 2
    try:
        results = Path(args[0]).read_text()
        tables, timing = tables_by_title(results), bench_time_line(results)
        if not tables:
            raise ValueError(f"{args[0]}: no '### title' sections with tables")
        for target in map(Path, args[1:]):
            new, done = refresh(target.read_text(), tables)
            new, timed = refresh_bench_time(new, timing)
            target.write_text(new)
            print(f"{target}: {len(done)} table(s) replaced" + (f": {'; '.join(done)}" if done else "")
                  + ("; bench time line replaced" if timed else ""))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
