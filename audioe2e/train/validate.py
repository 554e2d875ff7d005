"""`audioe2e train validate`: score a run's last checkpoint on this corpus's valset, afterwards.

Why: a run trained where the valset is not (a lent GPU machine gets a subset of the training
audio and no validation split; `train run --val-every 0`) comes back with weights and a log of
losses only. Scoring its checkpoint here, on the fixed valset every other run was scored on,
writes the same `val` / `val_ema` log line the loop would have written, so `train export`
builds the card (and picks `--which ema` scores) exactly as for a run validated in the loop.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..checkpoint import load_weights, save_weights
from ..registry import build_model
from .ema import WeightAverage
from .loop import evaluate
from .runstate import model_tensors
from .recipes import get_recipe
from .valsets import load_valset, valset_id


def validate_run(run: Path, corpus: Path) -> dict:
    """Score RUN/last.safetensors (and its moving average, if any) and log it; returns the line.

    The line is appended to RUN/log.jsonl unless the log already holds scores for that step,
    and the checkpoint's `val_id` is set to the valset scored on (what export's card names)."""
    last = run / "last.safetensors"
    if not last.is_file():
        raise FileNotFoundError(f"{last} not found")
    state, config, meta = load_weights(last)
    if "recipe" not in meta or "step" not in meta:
        raise ValueError(f"{last}: not a training checkpoint (no recipe and step in its metadata)")
    recipe = get_recipe(meta["recipe"])
    val = load_valset(corpus, recipe.task)
    line: dict = {}
    weights = {"val": {k: v for k, v in model_tensors(state).items() if not k.startswith("ema.")},
               "val_ema": WeightAverage.from_checkpoint(state)}
    for key, tensors in weights.items():
        if not tensors:
            continue
        model = build_model(config)
        model.load_state_dict(tensors)
        line[key] = evaluate(model, recipe.task, val, recipe.select_by)
    log_path = run / "log.jsonl"
    log = [json.loads(l) for l in log_path.read_text().splitlines() if l.strip()] if log_path.is_file() else []
    step = meta["step"]
    line.update(step=step, elapsed_h=round(meta.get("elapsed", 0.0) / 3600, 4),
                time=time.strftime("%Y-%m-%dT%H:%M:%S"), scored_by="train validate")
    changed = False
    if not any("val" in r and r.get("step") == step for r in log):
        with open(log_path, "a") as f:
            f.write(json.dumps(line) + "\n")
        meta["log_lines"], changed = len(log) + 1, True  # a later --resume keeps this line
    vid = valset_id(corpus, recipe.task)
    if meta.get("val_id") != vid:
        meta["val_id"], changed = vid, True
    if changed:
        save_weights(last, state, config, meta)
    return line
