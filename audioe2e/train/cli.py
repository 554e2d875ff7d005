"""`audioe2e train …`: run, resume and export training recipes (see README "Training")."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cli import fail
from .recipes import RECIPES  # names only: recipes.py imports no torch at module level

app = typer.Typer(help="Train the models on a corpus (see `audioe2e corpus build`).", no_args_is_help=True)


@app.command("run")
def run_cmd(
    recipe: str = typer.Argument(..., help=" | ".join(RECIPES)),
    corpus: Path = typer.Option(Path("corpus"), help="corpus folder with manifest.jsonl"),
    run: Path = typer.Option(..., "--run", "--run-dir", help="run folder: checkpoints and log.jsonl (--run-dir under torchrun, whose own options swallow --run)"),
    steps: int = typer.Option(20000, help="train until this many steps"),
    resume: bool = typer.Option(False, help="continue from RUN/last.safetensors"),
    device: str = typer.Option("cpu"),
    threads: Optional[int] = typer.Option(None, help="torch threads per process"),
    batch: Optional[int] = typer.Option(None), seconds: Optional[float] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    val_every: int = typer.Option(500, help="validate every N steps (0: never, for a machine without the "
                                  "valset; score the checkpoint later with `train validate`)"),
    workers: int = typer.Option(0, help="make batches in N forked processes ahead of the step (GPU "
                                "training; the batches are the same as with 0)"),
    minutes: Optional[float] = typer.Option(None, help="stop with a checkpoint after this many minutes "
                                            "of wall time"),
    anneal: bool = typer.Option(False, help="with --minutes: lower the learning rate along a half cosine "
                                "to 0 at the end of those minutes"),
    ckpt_minutes: float = typer.Option(5.0), seed: int = typer.Option(0),
    init_from: Optional[Path] = typer.Option(None, help="warm start a new run from these weights "
                                             "(tensors whose name and shape match)"),
    warmup: int = typer.Option(0, help="ramp the learning rate up linearly over the run's first "
                               "STEPS steps (for warm starts that add zero-initialised layers)"),
    ema: Optional[float] = typer.Option(None, help="also keep an exponential moving average of the weights "
                                        "with this decay (e.g. 0.999), scored beside them at each validation; "
                                        "a resumed run keeps its own unless given (0 drops it)"),
    speed: Optional[str] = typer.Option(None, help="speed-perturbation range LOW,HIGH (default 0.9,1.1, "
                                        "or what a resumed run was saved with); e.g. 0.8,1.25 for more voices"),
    levels: Optional[str] = typer.Option(None, help="training mixture levels LOW,HIGH in dBFS RMS (default: the "
                                         "recipe's, mostly -60,-5), e.g. -35,-10 to match an older run"),
    balance: Optional[str] = typer.Option(None, help="how training speakers are drawn: 'speaker' (each ∝ sqrt of "
                                          "its audio; the default) or 'source' (each source ∝ sqrt of its audio "
                                          "first, so many synthetic voices do not outweigh a few real ones); a "
                                          "resumed run keeps its own unless given"),
):
    """Train (or continue) a recipe. Under `torchrun --nproc_per_node N` it runs DDP."""
    import torch

    from ..checkpoint import WeightsFileError
    from .data import BALANCES
    from .loop import TrainSetupError, train
    from .recipes import get_recipe

    if threads:
        torch.set_num_threads(threads)
    if ema is not None and ema != 0.0 and not 0.0 < ema < 1.0:
        fail(f"--ema must be a decay between 0 and 1, got {ema:g}", 2)
    speed_range = _range_option("--speed", speed, 0.5, 2.0)
    level_range = _range_option("--levels", levels, -100.0, 0.0)
    if val_every < 0 or workers < 0 or (minutes is not None and minutes <= 0):
        fail("--val-every and --workers must be 0 or more, --minutes more than 0", 2)
    if balance is not None and balance not in BALANCES:
        fail(f"--balance must be {' or '.join(map(repr, BALANCES))}, got {balance!r}", 2)
    if warmup < 0:
        fail(f"--warmup must be 0 or more steps, got {warmup}", 2)
    _need_manifest(corpus)
    try:
        rec = get_recipe(recipe)
    except KeyError as e:
        fail(str(e.args[0]), 2)
    try:
        best = train(rec, corpus, run, steps, resume=resume, device=device,
                     ckpt_minutes=ckpt_minutes, val_every=val_every, batch=batch, seconds=seconds,
                     lr=lr, seed=seed, init_from=init_from, warmup=warmup, ema=ema, speed=speed_range,
                     level_db=level_range, workers=workers, minutes=minutes,
                     anneal=anneal, balance=balance)
    except (TrainSetupError, WeightsFileError, FileNotFoundError, FileExistsError) as e:  # bad --init-from / --run, no pesq
        fail(str(e), 2)
    typer.echo(f"done: best {best}", err=True)


def _need_manifest(corpus: Path) -> None:
    if not (corpus / "manifest.jsonl").is_file():
        fail(f"{corpus}/manifest.jsonl not found (build it with `audioe2e corpus build`)", 2)


def _range_option(flag: str, text: Optional[str], lo: float, hi: float):
    """`LOW,HIGH` → (low, high) within [lo, hi], or a one-line usage error (exit 2)."""
    if text is None:
        return None
    try:
        pair = tuple(float(v) for v in text.split(","))
    except ValueError:
        pair = ()
    if len(pair) != 2 or not lo <= pair[0] <= pair[1] <= hi:
        fail(f"{flag} must be LOW,HIGH with {lo:g} ≤ LOW ≤ HIGH ≤ {hi:g}, got {text!r}", 2)
    return pair


@app.command("validate")
def validate_cmd(run: Path = typer.Option(..., "--run", "--run-dir", help="run folder with last.safetensors"),
                 corpus: Path = typer.Option(Path("corpus"), help="corpus folder with manifest.jsonl")):
    """Score a run's last checkpoint (and its moving average) on this corpus's valset and add
    the scores to its log, for a run trained with --val-every 0 on another machine."""
    from .validate import validate_run

    _need_manifest(corpus)
    try:
        line = validate_run(run, corpus)
    except (FileNotFoundError, KeyError, ValueError) as e:  # no checkpoint, unknown recipe, bad corpus
        fail(f"{e.args[0] if isinstance(e, KeyError) else e}", 2)
    for key in ("val", "val_ema"):
        if key in line:
            typer.echo(f"step {line['step']} {key}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in line[key].items() if isinstance(v, float)))


@app.command("export")
def export_cmd(run: Path = typer.Option(...), name: str = typer.Option(..., help="model name, e.g. enhancer-tiny"),
               models: Path = typer.Option(Path("models")), corpus: Optional[Path] = typer.Option(Path("corpus")),
               which: str = typer.Option("best", help="best | last | ema (the moving average in last.safetensors, from --ema)"),
               atten_lim: Optional[float] = typer.Option(None, "--atten-lim", help="enhancers: the noise floor (dB) `enhance` keeps by default for these weights; choose it on a validation draw (default: none)"),
               blend_with: Optional[Path] = typer.Option(None, "--blend-with", help="weights of the same network (e.g. what the run was warm-started from): export (1 - BLEND) x these + BLEND x the run's, scored afresh on the valset"),
               blend: Optional[float] = typer.Option(None, "--blend", help="the run's share with --blend-with, 0 to 1")):
    """Copy a run's weights into MODELS with a model card and sha256 manifest entry."""
    from .export import export_run

    try:
        card = export_run(run, name, models, corpus, which, atten_lim_db=atten_lim, blend_with=blend_with, blend=blend)
    except (ValueError, FileNotFoundError) as e:  # unknown name, missing run files, no corpus
        fail(str(e), 2)
    typer.echo(f"exported {name}: step {card['step']}, metrics {card['metrics']}", err=True)
    if not card["metrics"]:  # the card and `audioe2e models` would show no scores
        typer.echo(f"warning: the log has no validation of step {card['step']}; run `audioe2e train "
                   f"validate --run {run}` and export again", err=True)
