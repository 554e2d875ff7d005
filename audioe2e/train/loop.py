"""The training loop shared by every model: resumable, logged, single-process or DDP.

Why this shape: training here runs for hours on 2 CPU cores in the background and gets
killed (sessions end). So: a checkpoint (model + optimiser, safetensors, no pickle) every few
minutes written atomically, `--resume` continues from it bit-for-bit in data (batches are a
pure function of seed/step/rank), JSONL logs, validation on the fixed on-disk valset. Under
`torchrun` each rank draws its own batches and DDP averages gradients; rank 0 does the I/O.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from ..checkpoint import load_weights
from ..registry import build_model
from .recipes import Recipe, loss_for, optimised_names
from .runstate import RunWriter, balance_note, fresh, model_tensors, restore, speed_note


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


class TrainSetupError(ValueError):
    """A run that cannot start (bad option or missing package): one line for the CLI."""


class WarmStartError(TrainSetupError):
    """--init-from weights that share no tensor (name and shape) with the model."""


def warm_start(model, path: Path) -> list[str]:
    """Initialise from another model's weights wherever name and shape match (e.g. the
    enhancer from the separator: same front-end and TCN, only the mask head differs).
    A matrix that only gained input columns (an enhancer given lookahead features) keeps the
    old columns and gets zeros in the new ones, so it starts as the old function.
    Why: on 2 CPU cores a good start is worth hours of steps. Returns the names copied."""
    state = model_tensors(load_weights(path)[0])
    own = model.state_dict()
    copied = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    for k, v in state.items():
        if k in own and own[k].ndim == v.ndim == 2 and own[k].shape[0] == v.shape[0] \
                and own[k].shape[1] > v.shape[1]:
            wide = torch.zeros_like(own[k])
            wide[:, : v.shape[1]] = v
            copied[k] = wide
    if not copied:
        raise WarmStartError(f"{path}: no tensor matches this model (name and shape)")
    own.update(copied)
    own.update(_inert_new_blocks(own, copied))
    model.load_state_dict(own)
    return sorted(copied)


def _inert_new_blocks(own: dict, copied: dict) -> dict:
    """Zeroed residual and skip outputs for the residual blocks of a deeper model that its
    warm start had no weights for (a TCN grown from 2 to 4 repeats), when it had some for
    others: such a block then adds nothing to its input and nothing to the skip sum, so the
    grown model starts as the trained one's function and the new blocks learn from there
    (Net2Net-style growth, Chen et al. 2016; zero-initialised residual branches as in Goyal
    et al. 2017). Their other weights keep their random initialisation, so the gradient
    reaching the zeroed outputs is not zero."""
    import re
    block = re.compile(r"^(.*\.blocks\.\d+)\.(res|skip)\.(weight|bias)$")
    had = {m.group(1) for k in copied if (m := block.match(k))}
    if not had:
        return {}
    return {k: torch.zeros_like(v) for k, v in own.items()
            if (m := block.match(k)) and m.group(1) not in had}


def _mean_perceptual(est: torch.Tensor, ref: torch.Tensor) -> dict:
    """Mean wide-band PESQ and STOI over [N, T] clips (the bench's and `eval`'s scoring), each
    only where its package is installed."""
    from ..metrics.perceptual import available
    from ..metrics.scoring import mean_of, score
    mets = tuple(m for m in ("pesq_wb", "stoi") if available(m))
    if not mets:
        return {}
    rows = [score(r.numpy(), e.numpy(), metrics=mets) for e, r in zip(est, ref)]
    return mean_of(rows, list(mets))


def evaluate(model, task: str, val, select_by: str | None = None) -> dict:
    """Mean SI-SDR and its improvement over the input on the fixed valset, PESQ-WB and STOI
    for the enhancers and the codec, and `score` (higher is better, its kind in `score_kind`) that
    picks the best checkpoint: SI-SDR for separation; PESQ-WB, the perceptual target, for
    enhancement and the codec (whose output need not be phase-aligned) when `pesq` is there,
    else SI-SDR (enhancement) or minus the multi-resolution STFT distance (codec).
    `select_by` (a recipe's choice, e.g. "stoi" for a run trained for intelligibility) names
    another measured metric to pick by; where it was not measured the default stands."""
    from .losses import multires_stft_loss, pit_si_sdr, si_sdr

    x, y, _ = val
    model.eval()
    outs = []
    first = next(iter(model.parameters()), None)  # the valset stays on the CPU; chunks visit the model's device
    dev = first.device if first is not None else torch.device("cpu")
    with torch.no_grad():
        for i in range(0, len(x), 8):
            xi = x[i:i + 8].to(dev)
            outs.append((model.validation_forward(xi) if hasattr(model, "validation_forward")
                         else model(xi)).cpu())
    est = torch.cat(outs)
    model.train()
    if task == "separate":
        score = pit_si_sdr(est, y)[0]
        base = pit_si_sdr(torch.stack([x, x], 1), y)[0]
    else:
        score, base = si_sdr(est, y), si_sdr(x, y)
    out = {"si_sdr": score.mean().item(), "si_sdri": (score - base).mean().item()}
    out["score"], out["score_kind"] = out["si_sdr"], "si_sdr"
    if task == "codec":
        out["mrstft"] = multires_stft_loss(est, y).item()
        out["score"], out["score_kind"] = -out["mrstft"], "-mrstft"
    if task in ("enhance", "codec"):
        out.update({k: v for k, v in _mean_perceptual(est, y).items() if v is not None})
        if out.get("pesq_wb") is not None:
            out["score"], out["score_kind"] = out["pesq_wb"], "pesq_wb"
    if select_by is not None and out.get(select_by) is not None:
        out["score"], out["score_kind"] = out[select_by], select_by
    return out


def _time_used(started: float, minutes: float, world: int, dev) -> float:
    """The fraction of `minutes` of wall time used so far (≥ 1: stop). Under DDP rank 0's
    clock decides for all: ranks that stopped at different steps would wait on each other's
    gradients forever, and ranks at different learning rates would drift apart."""
    used = (time.time() - started) / (minutes * 60)
    if world == 1:
        return used
    flag = torch.tensor([used], device=dev)
    torch.distributed.broadcast(flag, src=0)
    return float(flag.item())


def _score_kind(best: dict, task: str) -> str:
    """What a stored best score measured (older checkpoints did not say)."""
    return best.get("score_kind") or ("-mrstft" if task == "codec" else "si_sdr")


def _log_at_checkpoint(path: Path, meta: dict | None) -> tuple[int, str | None]:
    """(lines the log keeps, note or None). A run stopped between checkpoints logged steps that
    its resume will train again: keep the log as it was when the checkpoint was saved
    (`log_lines` in its meta) and say what was dropped. Why: otherwise the log holds those
    steps twice, and notes of a resume that saved nothing (e.g. a setting changed, then the
    process killed) read as history."""
    lines = path.read_text().splitlines() if path.is_file() else []
    n = (meta or {}).get("log_lines")
    if n is None or len(lines) <= n:  # a fresh run, older checkpoints, or a log that was replaced
        return len(lines), None
    tail = lines[n:]
    steps = []
    for line in tail:
        try:
            steps.append(json.loads(line).get("step"))
        except ValueError:  # a line cut short when the process was killed
            pass
    steps = [s for s in steps if isinstance(s, int)]
    path.write_text("".join(l + "\n" for l in lines[:n]))
    span = f" (steps {min(steps)}–{max(steps)})" if steps else ""
    return n, (f"resumed from the step-{meta['step']} checkpoint: {len(tail)} log lines written after it "
               f"by the stopped run{span} dropped")


def make_adversary(options: dict, sample_rate: int, device):
    """The recipe's extra learned critic: `kind` "metric" is train.metric_gan's PESQ
    predictor (default enhancer, `codec-metric`), otherwise train.adversarial's STFT
    discriminator (`codec-gan`)."""
    options = dict(options)
    if options.pop("kind", "stft") == "metric":
        from .metric_gan import MetricGAN
        return MetricGAN(**options, sample_rate=sample_rate, device=device)
    from .adversarial import Adversarial
    return Adversarial(**options, sample_rate=sample_rate, device=device)


class _ModelWithLoss(torch.nn.Module):
    """The model and its training loss as one module, so that DDP's search for unused
    parameters starts from the loss: the codec's VQ codebook/commitment loss is a side output
    of its forward (the codebooks reach the reconstruction only through the straight-through
    estimator, detached), and searched from the reconstruction alone DDP took the codebooks
    for unused and then saw their gradients arrive ("marked as ready twice")."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x, y):
        est = self.model(x)
        return self.loss_fn(est, y), est


def _device(name: str) -> torch.device:
    """The device to train on, with CUDA's fast float32 paths switched on."""
    dev = torch.device(name)
    if dev.type == "cuda":  # TF32 matmuls/convs: ~fp32 accuracy for SI-SDR training, several times faster
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return dev


def _require_loss_packages(recipe: Recipe):
    """Stop before training, in one line, where the recipe's loss needs a package that is not
    installed (rather than at the first step, after the valset is built)."""
    if recipe.extra.get("stoi_weight"):
        try:
            import julius  # noqa: F401  (losses.approx_stoi resamples with it)
        except ImportError as e:
            raise TrainSetupError(f"the STOI loss term needs the julius package ({e}): "
                                  "pip install 'audioe2e[train]'") from None


def _moving_average(model, ema: float | None, state, rank: int):
    """(the moving average of the weights or None, its note or None). `ema` is the decay asked
    for; the average resumes from the checkpoint's (`state.ema_tensors`) where it has one. The
    note says where an average starts, changes decay or is dropped."""
    from .ema import WeightAverage
    if ema and rank == 0:  # every rank holds the same weights; only rank 0 validates and saves
        keep = state.ema_tensors or None
        average = WeightAverage(model, ema, keep)
        if keep is None:
            return average, f"EMA of the weights (decay {ema:g}) from step {state.step}: scored beside the raw weights"
        if state.saved_ema != ema:
            return average, f"EMA decay {state.saved_ema:g} -> {ema:g} from step {state.step}"
        return average, None
    if state.saved_ema and not ema:
        return None, f"EMA of the weights dropped from step {state.step}"
    return None, None


def _training_net(model, recipe: Recipe, world: int) -> torch.nn.Module:
    """The model with its loss as one module (see _ModelWithLoss), under DDP for `world` > 1."""
    net = _ModelWithLoss(model, loss_for(recipe, model))
    if world > 1:
        # The TCN's last residual conv feeds nothing (only its skip output is used), and the
        # codec's dropped quantiser stages feed nothing in some steps.
        net = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    return net


def _lr_factor(step: int, warmup: int, anneal: bool, used: float) -> float | None:
    """The fraction of the run's learning rate to train step `step` at, or None where the
    optimiser's rate stands as it is (no schedule, or past the warm-up). The warm-up ramps
    linearly to the full rate at step `warmup` (see train's docstring for why); --anneal
    multiplies in a half cosine of `used`, the fraction of the --minutes spent."""
    if not ((warmup and step <= warmup) or anneal):
        return None
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if anneal:
        factor *= 0.5 * (1.0 + math.cos(math.pi * used))
    return factor


def _schedule_notes(warmup: int, anneal: bool, minutes: float | None, state) -> list[str]:
    """The notes for the learning-rate schedule this process follows from `state.step`."""
    notes = []
    if warmup and state.step < warmup:
        notes.append(f"learning rate warm-up over steps 0-{warmup}: {state.base_lr:g} from step {warmup}")
    if anneal:
        notes.append(f"learning rate {state.base_lr:g} annealed to 0 over {minutes:g} min (half cosine) "
                     f"from step {state.step}")
    return notes


def _train_step(net, model, opt, x, y, step: int, adv, average):
    """One step on the batch (x, y): the loss (plus the critic's term for the model), its
    gradient clipped to norm 5, Adam's step and the moving average's update (both skipped when
    the gradient is not finite, so one bad batch cannot wreck the weights), then the critic's
    own step. Returns (loss, gradient norm)."""
    loss, est = net(x, y)
    if adv is not None:
        loss = loss + adv.generator_loss(est, y, step, mix=x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    if torch.isfinite(gnorm):
        opt.step()
        if average is not None:
            average.update(model)
    if adv is not None:  # on this step's (detached) output, once the generator has stepped
        adv.discriminator_step(est, y, step, mix=x)
    return loss, gnorm


def _validate(model, average, recipe: Recipe, val, state, writer):
    """Score the weights and, with --ema, their moving average on the valset and log the
    scores; the better of the two becomes best.safetensors when it beats the run's best."""
    metrics = evaluate(model, recipe.task, val, recipe.select_by)
    candidates = [(metrics, model, "raw")]
    if average is not None:
        candidates.append((evaluate(average.model, recipe.task, val, recipe.select_by),
                           average.model, "ema"))
        writer.emit({"val": metrics, "val_ema": candidates[1][0]})
    else:
        writer.emit({"val": metrics})
    metrics, chosen, kind = max(candidates, key=lambda c: c[0]["score"])
    _keep_if_best(metrics, chosen, kind, recipe.task, state, writer)


def _keep_if_best(metrics: dict, chosen, kind: str, task: str, state, writer):
    """Make `chosen` (its scores `metrics`, `kind` "raw" or "ema") the run's best checkpoint if
    it scores above `state.best`. A best score of another kind (a recipe that now picks by
    another metric) cannot be compared: it is dropped, with a note."""
    best = state.best
    if best is not None and _score_kind(best, task) != metrics["score_kind"]:
        writer.note(f"best checkpoint now chosen by {metrics['score_kind']} "
                    f"(was {_score_kind(best, task)}): best reset")
        best = state.best = None
    if best is None or metrics["score"] > best.get("score", best["si_sdr"]):
        state.best = dict(metrics, step=state.step, weights=kind)
        writer.save_best(chosen, metrics, kind)


def train(recipe: Recipe, corpus: Path, run: Path, steps: int, resume: bool = False,
          device: str = "cpu", ckpt_minutes: float = 5.0, val_every: int = 500, log_every: int = 25,
          batch: int | None = None, seconds: float | None = None, lr: float | None = None, seed: int = 0,
          init_from: Path | None = None, warmup: int = 0, ema: float | None = None,
          speed: tuple[float, float] | None = None, level_db: tuple[float, float] | None = None,
          workers: int = 0, minutes: float | None = None, anneal: bool = False,
          balance: str | None = None):
    """Train `recipe` to `steps` steps in `run` (see the CLI for the options).

    `warmup` ramps the learning rate from ~0 to its value over steps 0..warmup−1. Why: Adam's
    first updates move every parameter by about the full learning rate whatever its gradient,
    so a zero-initialised head added to a trained model (the deep filter) moves all its
    weights together at once and its output jumps (measured on the deep filter from
    enhancer-gru step 9,835 at 1e-4: training loss 0.9 dB worse than the parent's on the same
    first 50 batches without warm-up, level with it with a 1,000-step warm-up).

    `ema` > 0 keeps an exponential moving average of the weights with that decay (see ema.py);
    validation then scores both and the best checkpoint is whichever of the two is better.
    None keeps what a resumed run was saved with (none for a fresh run); 0 drops it.

    `batch` and `seconds` (training segment length) default to the recipe's, or to what a
    resumed run was saved with; a change of segment length is logged as a note.

    `level_db` (low, high) overrides the recipe's training mixture levels (dBFS RMS), e.g. to
    continue an ablation twin under the range its main model had at those steps; a resumed run
    takes the recipe's range unless it is given, and a change is logged.

    `speed` (low, high) is the speed-perturbation range (data.SPEED when not given; a resumed
    run keeps the range it was saved with unless a new one is given).

    `balance` ("speaker" or "source", see data.speaker_weights) is how training speakers are
    drawn; a resumed run keeps what it was saved with unless given.

    `workers` > 0 makes the batches in that many forked processes ahead of the step (for a
    GPU, where one process cannot mix audio as fast as the step runs; same batches either
    way). `minutes` stops the run after that much wall time with a checkpoint, for a machine
    lent for a fixed time; with `anneal` the learning rate follows a half cosine from its
    value to 0 over those minutes (a short run ends at a low rate instead of mid-descent).
    `val_every` 0 skips validation (a machine without the valset:
    score the checkpoint later with `train validate`)."""
    from .data import SPEED, Corpus, Mixer, batch as make_batch
    from .valsets import load_valset, valset_id

    if anneal and minutes is None:
        raise TrainSetupError("--anneal follows the wall time of --minutes: give both")
    rank, world = _dist()
    dev = _device(device)
    run_level = tuple(level_db) if level_db else tuple(recipe.level_db)
    torch.manual_seed(seed)  # same initial weights for the same seed (resume overrides them)
    model = build_model(dict(recipe.config)).to(dev)
    params = dict(model.named_parameters())
    optimised = optimised_names(model, recipe.frozen)
    for name in params.keys() - set(optimised):
        params[name].requires_grad_(False)
    opt = torch.optim.Adam([params[n] for n in optimised], lr=lr or recipe.lr)
    adv = make_adversary(recipe.adversarial, model.sample_rate, dev) if recipe.adversarial else None
    _require_loss_packages(recipe)

    # The run's state: restored from its checkpoint, or fresh; notes for what this process changes.
    last = run / "last.safetensors"
    resumed = resume and last.is_file()
    if resumed:
        state, notes = restore(last, model, opt, adv, recipe, batch=batch, seconds=seconds, lr=lr,
                               world=world, level_db=run_level)
        if ema is None:  # a plain --resume keeps the run's average (it used to drop it)
            ema = state.saved_ema
    else:
        state, notes = fresh(opt, recipe, batch=batch, seconds=seconds, level_db=run_level)
    if last.is_file() and not resume:
        raise FileExistsError(f"{run} already has a checkpoint: pass --resume to continue it")
    if not resumed and init_from is not None:
        notes.warm = f"warm start from {init_from}: {len(warm_start(model, init_from))}/{len(model.state_dict())} tensors"
    if adv is not None and not notes.adv and state.step == 0:
        notes.adv = f"adversarial training from step 0: {recipe.adversarial}"
    average, notes.ema = _moving_average(model, ema, state, rank)

    # What it trains on and is scored on.
    run.mkdir(parents=True, exist_ok=True)
    net = _training_net(model, recipe, world)
    run_speed = tuple(speed) if speed else (state.saved_speed or SPEED)
    notes.speed = speed_note(state.saved_speed, run_speed, state.step)
    run_balance = balance or state.saved_balance or "speaker"
    notes.balance = balance_note(state.saved_balance, run_balance, state.step)
    mixer = Mixer(Corpus(corpus, "train", balance=run_balance), state.seconds, level_db=run_level, speed=run_speed,
                  clean_share=recipe.clean_share)
    val = load_valset(corpus, recipe.task) if rank == 0 and val_every > 0 else None
    val_id = valset_id(corpus, recipe.task)
    if state.saved_val_id is not None and state.saved_val_id != val_id:
        state.best = None  # a rewritten valset: old scores are not comparable
        notes.valset = f"valsets rewritten ({state.saved_val_id} -> {val_id}: corpus rebuilt); resumed, best reset"

    writer = None  # rank 0 alone writes the log and the checkpoints
    if rank == 0:
        log_lines, notes.stopped = _log_at_checkpoint(run / "log.jsonl", state.meta)
        writer = RunWriter(run, state, log_lines, recipe=recipe, model=model, opt=opt, world=world,
                           val_id=val_id, level_db=run_level, speed=run_speed, average=average, adv=adv, balance=run_balance)
        for note in notes.in_order():
            writer.note(note)
    last_ckpt = started = time.time()
    running = []
    prefetch = None
    if workers > 0:
        from .data import BatchPrefetcher
        prefetch = BatchPrefetcher(mixer, recipe.task, state.batch, seed, rank, state.step, workers)
    if rank == 0:
        for note in _schedule_notes(warmup, anneal, minutes, state):
            writer.note(note)

    try:
        while state.step < steps:
            used = _time_used(started, minutes, world, dev) if minutes is not None else 0.0
            if used >= 1.0:
                if rank == 0:
                    writer.note(f"stopped after {minutes:g} min of wall time (--minutes) at step {state.step}")
                break
            t0 = time.time()
            factor = _lr_factor(state.step, warmup, anneal, used)
            if factor is not None:
                for g in opt.param_groups:
                    g["lr"] = state.base_lr * factor
            x, y = (prefetch.get(state.step) if prefetch
                    else make_batch(mixer, recipe.task, state.batch, seed, state.step, rank))
            # Randomness inside the forward (the codec's quantiser dropout) is a function of
            # seed/step/rank too, so a resumed run draws what an uninterrupted one would have.
            torch.manual_seed((seed * 1_000_003 + state.step) * 64 + rank)
            loss, gnorm = _train_step(net, model, opt, x.to(dev), y.to(dev), state.step, adv, average)
            state.step += 1
            state.elapsed += time.time() - t0
            running.append(loss.item())
            if rank == 0:
                if state.step % log_every == 0:
                    writer.emit({"loss": sum(running) / len(running), "grad_norm": float(gnorm),
                                 "sec_per_step": round(state.elapsed / max(state.step, 1), 3),
                                 **(adv.last if adv else {})})
                    running = []
                if val is not None and (state.step % val_every == 0 or state.step == steps):
                    _validate(model, average, recipe, val, state, writer)
                    writer.save()
                    last_ckpt = time.time()
                elif time.time() - last_ckpt > ckpt_minutes * 60:
                    writer.save()
                    last_ckpt = time.time()
    finally:  # also when a step raises: no batch workers outlive the run
        if prefetch is not None:
            prefetch.close()
    if rank == 0:
        writer.save()
        writer.close()
    return state.best
