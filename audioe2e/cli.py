"""The `audioe2e` command line: parse, validate, call `api`/`codecapi`, report.

Thin on purpose: the work is in the library. Nothing heavy (torch) is imported at module
level, so `audioe2e --help` is fast. Exit codes: 0 all files ok (or skipped), 1 some failed,
2 usage error, 3 model or feature not available in this build. Errors are one line on stderr
(`error: <file>: <reason>`); `--debug` or `AUDIOE2E_DEBUG=1` adds tracebacks. Logs, progress
and summaries go to stderr; stdout carries only audio (`-o -`) or the `--json` report (which
goes to stderr when stdout carries audio).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Annotated, List, Optional

import typer

from . import __version__

app = typer.Typer(name="audioe2e", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="End-to-end speech models on raw waveforms: separation, enhancement and "
                       "a neural codec. Inputs: files, folders, globs or '-' (stdin WAV).")
_state = {"debug": bool(os.environ.get("AUDIOE2E_DEBUG", "") not in ("", "0"))}

Inputs = Annotated[List[str], typer.Argument(help="Files, folders, globs, or '-' for stdin.",
                                             show_default=False)]
Output = Annotated[Optional[str], typer.Option(
    "-o", "--output", help="Output file, folder, or '-' for stdout. Default: beside each input "
    "(stdin: stdout).")]
Force = Annotated[bool, typer.Option("-f", "--force", help="Overwrite existing outputs.")]
Skip = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs exist.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")]
Json = Annotated[bool, typer.Option("--json", help="JSON report on stdout (stderr with -o -).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (enhance: auto = the torch-free CPU engine)")]
Threads = Annotated[Optional[int], typer.Option(help="Torch CPU threads.")]
Subtype = Annotated[Optional[str], typer.Option(
    help="Output sample format: PCM_16 | PCM_24 | PCM_32 | FLOAT (default: the input's).")]
Clip = Annotated[str, typer.Option(
    help="Integer outputs beyond full scale: clamp (count them) or rescale (whole file by its "
         "peak; files only, streams clamp).")]
Template = Annotated[Optional[str], typer.Option(
    help="Output name pattern under the output folder, e.g. '{stem}_spk{n}.wav'.")]


def _version(value: bool):
    if value:
        typer.echo(f"audioe2e {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")] = False,
          debug: Annotated[bool, typer.Option("--debug", help="Tracebacks on errors.")] = False):
    if debug:
        _state["debug"] = True


def fail(msg: str, code: int):
    """One `error:` line on stderr and exit `code` (every CLI's bad-input path, sub-apps too)."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _guard(fn, *args, **kwargs):
    """Run a library call, turning usage/model errors into one line and an exit code."""
    from .inputs import UsageError
    from .registry import ModelNotAvailable

    try:
        return fn(*args, **kwargs)
    except UsageError as e:
        fail(str(e), 2)
    except ModelNotAvailable as e:
        fail(str(e), 3)


def _batch(command: str, fn, inputs, output, quiet, json_out, **kw):
    from .report import exit_code, json_report, print_file_line, print_summary

    debug = _state["debug"]

    def on_report(r):
        if not debug:
            r.traceback = None
        print_file_line(r, quiet)

    reports = _guard(fn, inputs, output, progress=not quiet, on_report=on_report, **kw)
    print_summary(reports, quiet)
    if json_out:
        to_stdout = not (output == "-" or (output is None and list(inputs) == ["-"]))
        print(json_report(command, reports), file=sys.stdout if to_stdout else sys.stderr)
    raise typer.Exit(exit_code(reports))


@app.command()
def enhance(inputs: Inputs, output: Output = None,
            tiny: Annotated[bool, typer.Option("--tiny", help="Tiny causal enhancer.")] = False,
            atten_lim: Annotated[Optional[float], typer.Option(
                "--atten-lim", help="Limit the noise attenuation to this many dB by mixing the input "
                "back (default: 30 for --tiny, none for the default model; inf: the raw model output).")] = None,
            mix: Annotated[Optional[float], typer.Option(
                help="Wet/dry mix, 0 (input) .. 1 (enhanced).")] = None,
            force: Force = False, skip_existing: Skip = False, template: Template = None,
            subtype: Subtype = None, clip: Clip = "clamp", device: Device = "auto",
            threads: Threads = None, quiet: Quiet = False, json_out: Json = False):
    """Remove noise: `<stem>.wav` under -o DIR, `<stem>_enhanced.wav` beside the input."""
    from .api import run_enhance
    _batch("enhance", run_enhance, inputs, output, quiet, json_out, tiny=tiny,
           atten_lim_db=atten_lim, wet=mix, force=force, skip_existing=skip_existing,
           template=template, subtype=subtype, clip=clip, device=device, threads=threads)


@app.command()
def separate(inputs: Inputs, output: Output = None, force: Force = False,
             skip_existing: Skip = False, template: Template = None, subtype: Subtype = None,
             clip: Clip = "clamp", device: Device = "auto", threads: Threads = None,
             quiet: Quiet = False, json_out: Json = False,
             chunk: Annotated[Optional[float], typer.Option(
                 help="Seconds per separation window (default: the model's, 4 s).")] = None,
             overlap: Annotated[Optional[float], typer.Option(
                 help="Seconds of overlap between windows, used to keep speaker order "
                      "(default: the model's, 1 s).")] = None):
    """Split speakers: `<stem>_s1.wav`, `<stem>_s2.wav`, ... keeping the input's channels; to one file or stdout: one channel per speaker (multichannel input downmixed to mono)."""
    from .api import run_separate
    _batch("separate", run_separate, inputs, output, quiet, json_out, force=force,
           skip_existing=skip_existing, template=template, subtype=subtype, clip=clip,
           device=device, threads=threads, chunk=chunk, overlap=overlap)


@app.command()
def encode(inputs: Inputs, output: Output = None,
           bitrate: Annotated[float, typer.Option(help="Target kbit/s: with --vbr the most the "
                                                       "stream spends (packets, framing included; "
                                                       "a pause's bits go to the speech after it); "
                                                       "with --no-vbr it sets the number of "
                                                       "quantiser stages.")] = 3.0,
           vbr: Annotated[bool, typer.Option(help="Variable bitrate: few quantiser stages for "
                                                  "silence, the rest of each packet's bits for "
                                                  "the speech. --no-vbr: the same stages in every "
                                                  "frame (an .ae2 version 1 file).")] = True,
           packet_seconds: Annotated[float, typer.Option(
               help="Seconds of audio per packet: shorter packets cost bits (~14 bytes each) "
                    "but a live pipe's reader waits less and --conceal loses less per damaged "
                    "packet.")] = 2.0,
           force: Force = False, skip_existing: Skip = False, template: Template = None,
           device: Device = "auto", threads: Threads = None, quiet: Quiet = False,
           json_out: Json = False):
    """Compress speech to `.ae2` (mono; original rate, channels and length are stored)."""
    from .codecapi import run_encode
    _batch("encode", run_encode, inputs, output, quiet, json_out, bitrate=bitrate, vbr=vbr, force=force,
           skip_existing=skip_existing, template=template, device=device, threads=threads,
           packet_seconds=packet_seconds)


@app.command()
def decode(inputs: Inputs, output: Output = None,
           conceal: Annotated[bool, typer.Option(help="Carry on past damaged packets.")] = False,
           postfilter: Annotated[bool, typer.Option(
               help="Pitch postfilter on the decoded speech: a comb at the voice's period that "
                    "brings back harmonics the codec smears (causal, no delay).")] = True,
           force: Force = False, skip_existing: Skip = False, template: Template = None,
           subtype: Subtype = None, clip: Clip = "clamp", device: Device = "auto",
           threads: Threads = None, quiet: Quiet = False, json_out: Json = False):
    """Decode `.ae2` to WAV at the original rate, channels and exact length."""
    from .codecapi import run_decode
    _batch("decode", run_decode, inputs, output, quiet, json_out, conceal=conceal, postfilter=postfilter,
           force=force, skip_existing=skip_existing, template=template, subtype=subtype, clip=clip,
           device=device, threads=threads)


@app.command()
def info(files: Annotated[List[str], typer.Argument(help=".ae2 or audio files.")],
         json_out: Json = False):
    """Show an `.ae2` header (model, rates, bitrate) or an audio file's format."""
    from .api import describe
    from .codecapi import file_info

    rows, failed = [], False
    for path in files:
        try:
            rows.append(file_info(path))
        except Exception as e:
            failed = True
            typer.echo(f"error: {path}: {describe(e)}", err=True)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            header = row.pop("header", {})
            typer.echo(row.pop("file"))
            for k, v in {**header, **row}.items():
                typer.echo(f"  {k}: {round(v, 4) if isinstance(v, float) else v}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def models(json_out: Json = False):
    """List the pretrained models: task, availability, size, rate, latency, metrics."""
    from .registry import list_models

    rows = list_models()
    if json_out:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("name", "task", "available", "params", "rate", "latency ms", "size MB", "notes")
    for r in rows:
        size = f"{r['size_bytes'] / 1e6:.1f}" if r.get("size_bytes") else ""
        # val_score repeats one of the named metrics: show each number once, and the valset
        # fingerprint, since rows trained on different valsets are not comparable.
        metrics = ", ".join(f"{k} {v}" for k, v in (r.get("metrics") or {}).items()
                            if k not in ("val_score", "val_score_kind"))
        if metrics and r.get("val_id"):
            metrics += f" (valset {r['val_id'][:8]})"
        if r.get("default_atten_lim_db") is not None:
            metrics += f"; output keeps a {r['default_atten_lim_db']:g} dB noise floor (--atten-lim)"
        note = metrics or r.get("status", "")
        if "no trained weights" in note:
            note = "not shipped yet"
        t.add_row(r["name"], r["task"], "yes" if r["available"] else "no",
                  str(r.get("params") or ""), str(r.get("sample_rate") or ""),
                  str(r.get("latency_ms") or ""), size, note)
    console = Console()
    if not console.is_terminal:  # pipes and files: do not squeeze to 80 columns
        console = Console(width=120)
    console.print(t)


@app.command("eval")
def eval_cmd(ref: Annotated[str, typer.Option(help="Folder of reference (clean) files.")],
             est: Annotated[str, typer.Option(help="Folder of estimates (same names/stems).")],
             mix: Annotated[Optional[str], typer.Option(
                 help="Folder of the unprocessed inputs (adds SI-SDR improvement).")] = None,
             metrics: Annotated[str, typer.Option(help="Comma-separated metrics.")]
             = "si_sdr,pesq_wb,stoi",
             csv: Annotated[Optional[str], typer.Option(help="Also write a CSV here.")] = None,
             quiet: Quiet = False, json_out: Json = False):
    """SI-SDR(i), PESQ, STOI of estimates against references (table on stderr, --json)."""
    try:
        from .metrics import evaluate_dirs
    except ImportError as e:
        fail(f"eval: the metrics module is not available in this build ({e})", 3)
    result = _guard(evaluate_dirs, ref, est, mix=mix, metrics=metrics, json_out=json_out,
                    csv_path=csv, quiet=quiet)
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def bench(names: Annotated[Optional[List[str]], typer.Argument(help="Models (default: all).")] = None,
          seconds: Annotated[float, typer.Option(help="Seconds of audio per run.")] = 10.0,
          repeats: Annotated[int, typer.Option(help="Runs per setting (median).")] = 3,
          device: Device = "cpu", threads: Threads = None, json_out: Json = False):
    """Real-time factor (1 thread and all) and peak memory of each model here."""
    from .api import resolve_device
    from .bench import bench as run

    rows = _guard(run, names, seconds, repeats, _guard(resolve_device, device), threads)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        vals = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in r.items() if k != "model")
        typer.echo(f"{r['model']}: {vals}")


def _forward(name: str, module: str, help_text: str):
    """Register `name` as a sub-app imported only when used (keeps --help fast, and the CLI
    working when the module is absent)."""
    @app.command(name, help=help_text, add_help_option=False,
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def _cmd(ctx: typer.Context):
        import importlib

        try:
            sub = importlib.import_module(module).app
        except ImportError as e:
            fail(f"{name}: not available in this build ({e})", 3)
        cmd = typer.main.get_command(sub)
        cmd.main(args=list(ctx.args), prog_name=f"audioe2e {name}")


_forward("corpus", "audioe2e.corpus", "Build the training corpus (see `audioe2e corpus --help`).")
_forward("train", "audioe2e.train.cli", "Train the models (see `audioe2e train --help`).")


def main():
    from .allocator import keep_freed_memory
    keep_freed_memory()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException as e:
        if _state["debug"]:
            raise
        from .api import describe
        typer.echo(f"error: {describe(e)}", err=True)
        sys.exit(1)
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
