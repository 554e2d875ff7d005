"""A training run's resumable state: what `last.safetensors` carries between processes (the
`model.*` / `optim.*` tensor layout, read by export, validate and the critics too), how a resume
restores it and notes what changed, and rank 0's files (log, checkpoints).

Why its own module: a run is continued many times (sessions end, machines are lent for a fixed
time), each time perhaps with other options. Every change of what the run trains on is logged
as a note, because the model card's history must not hide one. The loop itself (loop.train)
then only sees a `RunState` to advance, `Notes` to log and a `RunWriter` to write with.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ..checkpoint import load_weights, save_weights
from .data import LEVEL_DB, SPEED
from .ema import WeightAverage


def model_tensors(state: dict) -> dict:
    """The model's own tensors from a weights file: a training checkpoint prefixes them with
    `model.` (beside `optim.*`), an exported model file has them bare."""
    if any(k.startswith("model.") for k in state):
        return {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    return state


def optimizer_state_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Flatten Adam state into named tensors + JSON-able scalars (so it fits safetensors)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {"param_groups": sd["param_groups"]}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, scalars


def load_optimizer_state(opt, tensors: dict, scalars: dict):
    state: dict = {}
    for name, v in tensors.items():
        _, idx, k = name.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for name, v in scalars.items():
        if name == "param_groups":
            continue
        idx, k = name.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


@dataclass
class RunState:
    """What the loop advances and each checkpoint saves beside the tensors (the meta of
    `last.safetensors`), plus what the resumed checkpoint said, to compare this process's
    options with."""
    step: int
    elapsed: float  # seconds spent in training steps, over all the run's processes
    best: dict | None  # the best validation so far (its metrics, step and weights), or None
    base_lr: float  # the run's rate; during --warmup the optimiser holds a fraction of it
    batch: int
    seconds: float  # training segment length
    meta: dict | None = None  # the resumed checkpoint's meta; None for a fresh run
    ema_tensors: dict = field(default_factory=dict)  # its moving average, unprefixed ({}: none)

    @property
    def saved_val_id(self) -> str | None:
        """The valset the saved scores were measured on (None: a fresh run; "": not recorded)."""
        return None if self.meta is None else self.meta.get("val_id", "")

    @property
    def saved_speed(self) -> tuple | None:
        """The speed-perturbation range the run was saved with (None: a fresh run)."""
        return None if self.meta is None else tuple(self.meta.get("speed", SPEED))  # runs before the field: the old default

    @property
    def saved_balance(self) -> str | None:
        """How the run drew speakers when saved (None: a fresh run; runs before the field: "speaker")."""
        return None if self.meta is None else self.meta.get("balance", "speaker")

    @property
    def saved_ema(self) -> float:
        """The decay of the moving average the run was saved with (0: none)."""
        return 0.0 if self.meta is None else self.meta.get("ema", 0.0)


@dataclass
class Notes:
    """The notes a run logs before its first step, one per field, logged in the field order
    (`in_order`) by rank 0. Each says what changed from the step it names, so that the log (and
    the model card built from it) tells where the run's training changed."""
    stopped: str | None = None  # log lines of a stopped run dropped (loop._log_at_checkpoint)
    optim: str | None = None  # no optimiser state to resume
    warm: str | None = None  # warm start (--init-from)
    lr: str | None = None
    loss: str | None = None
    level: str | None = None  # training mixture levels
    speed: str | None = None
    balance: str | None = None  # how speakers are drawn (data.speaker_weights)
    seconds: str | None = None  # training segment length
    world: str | None = None  # effective batch (processes x batch)
    adv: str | None = None  # the critic: new, or new options
    ema: str | None = None  # moving average: new, new decay, or dropped
    valset: str | None = None  # export starts the card's validation history after this note

    def in_order(self) -> list[str]:
        """The notes to log, in the order they are logged."""
        return [note for note in (getattr(self, f.name) for f in fields(self)) if note]


def fresh(opt, recipe, *, batch: int | None, seconds: float | None, level_db: tuple) -> tuple[RunState, Notes]:
    """The state of a run that starts at step 0 (the options given, else the recipe's) and its
    note for mixture levels off the recipe's range."""
    state = RunState(step=0, elapsed=0.0, best=None, base_lr=opt.param_groups[0]["lr"],
                     batch=batch or recipe.batch, seconds=seconds or recipe.seconds)
    notes = Notes()
    if level_db != tuple(recipe.level_db):  # a fresh run off the recipe's range
        notes.level = f"training mixture levels {level_db[0]:g}…{level_db[1]:g} dBFS RMS from step 0"
    return state, notes


def restore(last: Path, model, opt, adv, recipe, *, batch: int | None, seconds: float | None,
            lr: float | None, world: int, level_db: tuple) -> tuple[RunState, Notes]:
    """Load the checkpoint `last` into the model, its optimiser and the critic `adv` (or None),
    and return the run's state with the notes for what this process changes: `batch`,
    `seconds` and `lr` are its options (None: keep the run's), `world` its number of processes,
    `level_db` the mixture levels it trains on. The run's rate is set on the optimiser."""
    tensors, _, meta = load_weights(last)
    model.load_state_dict(model_tensors(tensors))
    step = meta["step"]
    notes = Notes(optim=_restore_optimizer(opt, tensors, meta))
    base_lr, notes.lr = _restore_lr(opt, meta, lr, step)
    notes.adv = _restore_adversary(adv, tensors, meta, recipe, step)
    state = RunState(step=step, elapsed=meta["elapsed"], best=meta.get("best"), base_lr=base_lr,
                     # A resumed run keeps its batch and segment length unless new ones are given (it used
                     # to fall back to the recipe's, silently changing what a plain --resume trained on).
                     batch=batch or meta.get("batch", recipe.batch),
                     seconds=seconds or meta.get("seconds", recipe.seconds),
                     meta=meta, ema_tensors=WeightAverage.from_checkpoint(tensors))
    if "seconds" in meta and meta["seconds"] != state.seconds:
        notes.seconds = f"training segments {meta['seconds']:g} s -> {state.seconds:g} s from step {step}"
    if (meta.get("world", 1), meta.get("batch", state.batch)) != (world, state.batch):
        # e.g. a single-process run continued under torchrun: the effective batch changed
        notes.world = (f"effective batch {meta.get('world', 1)} x {meta.get('batch', state.batch)} -> "
                       f"{world} x {state.batch} (processes x batch) from step {step}")
    if meta.get("loss", {}) != recipe.extra:
        before = meta["loss"] if "loss" in meta else "(not recorded)"
        notes.loss = f"loss weights {before} -> {recipe.extra} from step {step}"
    before = tuple(meta.get("level_db", LEVEL_DB))  # runs before the field: the old default
    if before != level_db:
        notes.level = (f"training mixture levels {before[0]:g}…{before[1]:g} -> "
                       f"{level_db[0]:g}…{level_db[1]:g} dBFS RMS from step {step}")
    return state, notes


def _restore_optimizer(opt, tensors: dict, meta: dict) -> str | None:
    """Adam's state from the checkpoint, or the note that there was none to load."""
    otensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    if otensors:
        load_optimizer_state(opt, otensors, meta["optim"])
        return None
    # a checkpoint slimmed for transport (a lent machine's files come back size-capped)
    return f"no optimiser state in the checkpoint: Adam's moments start afresh from step {meta['step']}"


def _restore_adversary(adv, tensors: dict, meta: dict, recipe, step: int) -> str | None:
    """The critic's weights and optimiser where the checkpoint has them (its warm-up counts from
    the step it began at), else a fresh critic from this step; the note for either change."""
    if adv is None:
        return None
    if adv.load_state_tensors(tensors, meta.get("disc_optim")):
        adv.start = meta.get("adv_start", 0)
        if meta.get("adversarial") not in (None, recipe.adversarial):
            return f"adversarial options {meta['adversarial']} -> {recipe.adversarial} from step {step}"
        return None
    adv.start = step
    return f"adversarial training from step {step}: {recipe.adversarial}"


def _restore_lr(opt, meta: dict, lr: float | None, step: int) -> tuple[float, str | None]:
    """The run's learning rate (a new `lr` replaces it, with a note), set on the optimiser."""
    base_lr = meta.get("lr_base", opt.param_groups[0]["lr"])
    note = f"learning rate {base_lr:g} -> {lr:g} from step {step}" if lr and lr != base_lr else None
    if lr:
        base_lr = lr
    # The run's rate, not the saved one: a run that stopped mid-warm-up or at the end of
    # --anneal saved a fraction of it (the loop sets it per step only while ramping).
    for g in opt.param_groups:
        g["lr"] = base_lr
    return base_lr, note


def speed_note(saved: tuple | None, now: tuple, step: int) -> str | None:
    """The note for a speed-perturbation range changed on resume, or off the default in a fresh
    run (`saved` None)."""
    if saved is not None and saved != now:
        return (f"speed perturbation {saved[0]:g}…{saved[1]:g} -> "
                f"{now[0]:g}…{now[1]:g} from step {step}")
    if saved is None and now != SPEED:  # a fresh run off the default
        return f"speed perturbation {now[0]:g}…{now[1]:g} from step {step}"
    return None


def balance_note(saved: str | None, now: str, step: int) -> str | None:
    """The note for a change in how speakers are drawn, or a fresh run off the default."""
    if saved is None:  # a fresh run (or one saved before runs recorded it, which drew by speaker)
        return f"speakers drawn by {now} from step {step}" if now != "speaker" else None
    if saved != now:
        return f"speakers drawn by {now} (was {saved}) from step {step}"
    return None


class RunWriter:
    """Rank 0's files in the run folder: `log.jsonl` (each record also printed), the checkpoint
    `last.safetensors` that --resume continues from, and `best.safetensors`. It counts the log's
    lines so that each checkpoint records how many it had (`log_lines`): a resume then drops
    what a stopped run logged after its last checkpoint (see loop._log_at_checkpoint)."""

    def __init__(self, run: Path, state: RunState, log_lines: int, *, recipe, model, opt, world: int,
                 val_id: str, level_db: tuple, speed: tuple, average, adv, balance: str = "speaker"):
        self.run, self.state, self.log_lines, self.balance = run, state, log_lines, balance
        self.recipe, self.model, self.opt, self.average, self.adv = recipe, model, opt, average, adv
        self.world, self.val_id, self.level_db, self.speed = world, val_id, level_db, speed
        self.log = open(run / "log.jsonl", "a")

    def emit(self, rec: dict):
        """Log `rec` at the current step (and print it)."""
        self.log_lines += 1
        rec.update(step=self.state.step, elapsed_h=round(self.state.elapsed / 3600, 4),
                   time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.log.write(json.dumps(rec) + "\n")
        self.log.flush()
        print(json.dumps(rec), flush=True)

    def note(self, text: str):
        self.emit({"note": text})

    def save(self):
        """Write `last.safetensors`: the model, Adam's state, the moving average and the critic
        as tensors; the run's state and settings in the meta (what `restore` reads back)."""
        state, recipe = self.state, self.recipe
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        otensors, scalars = optimizer_state_tensors(self.opt)
        tensors.update(otensors)
        meta = {"step": state.step, "elapsed": state.elapsed, "best": state.best, "optim": scalars,
                "recipe": recipe.name, "batch": state.batch, "seconds": state.seconds, "world": self.world,
                "val_id": self.val_id, "lr_base": state.base_lr, "loss": recipe.extra,
                "level_db": list(self.level_db), "speed": list(self.speed), "balance": self.balance,
                "log_lines": self.log_lines}
        if self.average is not None:
            tensors.update(self.average.state_tensors())
            meta["ema"] = self.average.decay
        if self.adv is not None:
            dtensors, dscalars = self.adv.state_tensors()
            tensors.update(dtensors)
            meta.update(disc_optim=dscalars, adv_start=self.adv.start, adversarial=recipe.adversarial)
        save_weights(self.run / "last.safetensors", tensors, self.model.config_dict(), meta)

    def save_best(self, chosen, metrics: dict, kind: str):
        """Write `best.safetensors`: the weights that scored `metrics` (`kind` "raw" or "ema")."""
        save_weights(self.run / "best.safetensors", chosen.state_dict(), self.model.config_dict(),
                     {"step": self.state.step, "elapsed": self.state.elapsed, "val": metrics,
                      "recipe": self.recipe.name, "weights": kind})

    def close(self):
        self.log.close()
