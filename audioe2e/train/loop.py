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

from ..checkpoint import load_weights, save_weights
from ..registry import build_model
from .recipes import Recipe, loss_for


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


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
    predictor (enhancers), otherwise train.adversarial's STFT discriminator (codec)."""
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


def train(recipe: Recipe, corpus: Path, run: Path, steps: int, resume: bool = False,
          device: str = "cpu", ckpt_minutes: float = 5.0, val_every: int = 500, log_every: int = 25,
          batch: int | None = None, seconds: float | None = None, lr: float | None = None, seed: int = 0,
          init_from: Path | None = None, warmup: int = 0, ema: float | None = None,
          speed: tuple[float, float] | None = None, level_db: tuple[float, float] | None = None,
          workers: int = 0, minutes: float | None = None, anneal: bool = False):
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

    `workers` > 0 makes the batches in that many forked processes ahead of the step (for a
    GPU, where one process cannot mix audio as fast as the step runs; same batches either
    way). `minutes` stops the run after that much wall time with a checkpoint, for a machine
    lent for a fixed time; with `anneal` the learning rate follows a half cosine from its
    value to 0 over those minutes (a short run ends at a low rate instead of mid-descent).
    `val_every` 0 skips validation (a machine without the valset:
    score the checkpoint later with `train validate`)."""
    from .data import LEVEL_DB, SPEED, Corpus, Mixer, batch as make_batch
    from .ema import WeightAverage
    from .valsets import load_valset, valset_id

    if anneal and minutes is None:
        raise TrainSetupError("--anneal follows the wall time of --minutes: give both")
    rank, world = _dist()
    dev = torch.device(device)
    if dev.type == "cuda":  # TF32 matmuls/convs: ~fp32 accuracy for SI-SDR training, several times faster
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    batch_arg, seconds_arg = batch, seconds
    run_level = tuple(level_db) if level_db else tuple(recipe.level_db)
    batch = batch or recipe.batch
    seconds = seconds or recipe.seconds
    torch.manual_seed(seed)  # same initial weights for the same seed (resume overrides them)
    model = build_model(dict(recipe.config)).to(dev)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr or recipe.lr)
    adv = None
    if recipe.adversarial:
        adv = make_adversary(recipe.adversarial, model.sample_rate, dev)
    if recipe.extra.get("stoi_weight"):
        try:
            import julius  # noqa: F401  (losses.approx_stoi resamples with it)
        except ImportError as e:
            raise TrainSetupError(f"the STOI loss term needs the julius package ({e}): "
                                  "pip install 'audioe2e[train]'") from None
    step, elapsed, best, meta_val_id, warm, lr_note, loss_note = 0, 0.0, None, None, None, None, None
    level_note = speed_note = saved_speed = seconds_note = None
    adv_note = world_note = ema_note = optim_note = None
    ema_state: dict = {}
    ema_before = 0.0
    last = run / "last.safetensors"
    base_lr = opt.param_groups[0]["lr"]  # the run's rate; during --warmup the optimiser holds a fraction of it
    resumed = resume and last.is_file()
    if resumed:
        state, config, meta = load_weights(last)
        model.load_state_dict(model_tensors(state))
        otensors = {k: v for k, v in state.items() if k.startswith("optim.")}
        if otensors:
            load_optimizer_state(opt, otensors, meta["optim"])
        else:  # a checkpoint slimmed for transport (a lent machine's files come back size-capped)
            optim_note = f"no optimiser state in the checkpoint: Adam's moments start afresh from step {meta['step']}"
        step, elapsed, best = meta["step"], meta["elapsed"], meta.get("best")
        # A resumed run keeps its batch and segment length unless new ones are given (it used
        # to fall back to the recipe's, silently changing what a plain --resume trained on).
        batch = batch_arg or meta.get("batch", batch)
        seconds = seconds_arg or meta.get("seconds", seconds)
        if "seconds" in meta and meta["seconds"] != seconds:
            seconds_note = f"training segments {meta['seconds']:g} s -> {seconds:g} s from step {step}"
        if adv is not None:
            if adv.load_state_tensors(state, meta.get("disc_optim")):
                adv.start = meta.get("adv_start", 0)
                if meta.get("adversarial") not in (None, recipe.adversarial):
                    adv_note = f"adversarial options {meta['adversarial']} -> {recipe.adversarial} from step {step}"
            else:
                adv.start = step
                adv_note = f"adversarial training from step {step}: {recipe.adversarial}"
        meta_val_id = meta.get("val_id", "")
        ema_state, ema_before = WeightAverage.from_checkpoint(state), meta.get("ema", 0.0)
        if ema is None:  # a plain --resume keeps the run's average (it used to drop it)
            ema = ema_before
        base_lr = meta.get("lr_base", opt.param_groups[0]["lr"])
        if lr and lr != base_lr:
            lr_note = f"learning rate {base_lr:g} -> {lr:g} from step {step}"
        if lr:
            base_lr = lr
        # The run's rate, not the saved one: a run that stopped mid-warm-up or at the end of
        # --anneal saved a fraction of it (the loop sets it per step only while ramping).
        for g in opt.param_groups:
            g["lr"] = base_lr
        if (meta.get("world", 1), meta.get("batch", batch)) != (world, batch):
            # e.g. a single-process run continued under torchrun: the effective batch changed
            world_note = (f"effective batch {meta.get('world', 1)} x {meta.get('batch', batch)} -> "
                          f"{world} x {batch} (processes x batch) from step {step}")
        if meta.get("loss", {}) != recipe.extra:
            before = meta["loss"] if "loss" in meta else "(not recorded)"
            loss_note = f"loss weights {before} -> {recipe.extra} from step {step}"
        before = tuple(meta.get("level_db", LEVEL_DB))  # runs before the field: the old default
        if before != run_level:
            level_note = (f"training mixture levels {before[0]:g}…{before[1]:g} -> "
                          f"{run_level[0]:g}…{run_level[1]:g} dBFS RMS from step {step}")
        saved_speed = tuple(meta.get("speed", SPEED))  # runs before the field: the old default
    elif run_level != tuple(recipe.level_db):  # a fresh run off the recipe's range
        level_note = f"training mixture levels {run_level[0]:g}…{run_level[1]:g} dBFS RMS from step 0"
    if last.is_file() and not resume:
        raise FileExistsError(f"{run} already has a checkpoint: pass --resume to continue it")
    if not (resume and last.is_file()) and init_from is not None:
        warm = f"warm start from {init_from}: {len(warm_start(model, init_from))}/{len(model.state_dict())} tensors"
    if adv is not None and not adv_note and step == 0:
        adv_note = f"adversarial training from step 0: {recipe.adversarial}"
    average = None
    if ema and rank == 0:  # every rank holds the same weights; only rank 0 validates and saves
        keep = ema_state or None
        average = WeightAverage(model, ema, keep)
        if keep is None:
            ema_note = f"EMA of the weights (decay {ema:g}) from step {step}: scored beside the raw weights"
        elif ema_before != ema:
            ema_note = f"EMA decay {ema_before:g} -> {ema:g} from step {step}"
    elif ema_before and not ema:
        ema_note = f"EMA of the weights dropped from step {step}"
    run.mkdir(parents=True, exist_ok=True)
    net = _ModelWithLoss(model, loss_for(recipe, model))
    if world > 1:
        # The TCN's last residual conv feeds nothing (only its skip output is used), and the
        # codec's dropped quantiser stages feed nothing in some steps.
        net = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    run_speed = tuple(speed) if speed else (saved_speed or SPEED)
    if saved_speed is not None and saved_speed != run_speed:
        speed_note = (f"speed perturbation {saved_speed[0]:g}…{saved_speed[1]:g} -> "
                      f"{run_speed[0]:g}…{run_speed[1]:g} from step {step}")
    elif saved_speed is None and run_speed != SPEED:  # a fresh run off the default
        speed_note = f"speed perturbation {run_speed[0]:g}…{run_speed[1]:g} from step {step}"
    mixer = Mixer(Corpus(corpus, "train"), seconds, level_db=run_level, speed=run_speed,
                  clean_share=recipe.clean_share)
    val = load_valset(corpus, recipe.task) if rank == 0 and val_every > 0 else None
    val_id = valset_id(corpus, recipe.task)
    valset_changed = meta_val_id is not None and meta_val_id != val_id
    if valset_changed:
        best = None  # a rewritten valset: old scores are not comparable
    log_lines, stopped_note = 0, None
    if rank == 0:
        log_lines, stopped_note = _log_at_checkpoint(run / "log.jsonl", meta if resumed else None)
    log = open(run / "log.jsonl", "a") if rank == 0 else None

    def save():
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        otensors, scalars = optimizer_state_tensors(opt)
        tensors.update(otensors)
        meta = {"step": step, "elapsed": elapsed, "best": best, "optim": scalars, "recipe": recipe.name,
                "batch": batch, "seconds": seconds, "world": world, "val_id": val_id, "lr_base": base_lr,
                "loss": recipe.extra, "level_db": list(run_level), "speed": list(run_speed),
                "log_lines": log_lines}
        if average is not None:
            tensors.update(average.state_tensors())
            meta["ema"] = average.decay
        if adv is not None:
            dtensors, dscalars = adv.state_tensors()
            tensors.update(dtensors)
            meta.update(disc_optim=dscalars, adv_start=adv.start, adversarial=recipe.adversarial)
        save_weights(last, tensors, model.config_dict(), meta)

    def emit(rec):
        nonlocal log_lines
        log_lines += 1
        rec.update(step=step, elapsed_h=round(elapsed / 3600, 4), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(json.dumps(rec), flush=True)

    for note in (stopped_note, optim_note, warm, lr_note, loss_note, level_note, speed_note, seconds_note, world_note, adv_note, ema_note):
        if note and rank == 0:
            emit({"note": note})
    if valset_changed and rank == 0:  # export starts the card's validation history after this note
        emit({"note": f"valsets rewritten ({meta_val_id} -> {val_id}: corpus rebuilt); resumed, best reset"})
    last_ckpt = started = time.time()
    running = []
    prefetch = None
    if workers > 0:
        from .data import BatchPrefetcher
        prefetch = BatchPrefetcher(mixer, recipe.task, batch, seed, rank, step, workers)
    if warmup and step < warmup and rank == 0:
        emit({"note": f"learning rate warm-up over steps 0-{warmup}: {base_lr:g} from step {warmup}"})
    if anneal and rank == 0:
        emit({"note": f"learning rate {base_lr:g} annealed to 0 over {minutes:g} min (half cosine) from step {step}"})
    try:
        while step < steps:
            used = _time_used(started, minutes, world, dev) if minutes is not None else 0.0
            if used >= 1.0:
                if rank == 0:
                    emit({"note": f"stopped after {minutes:g} min of wall time (--minutes) at step {step}"})
                break
            t0 = time.time()
            if (warmup and step <= warmup) or anneal:
                factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
                if anneal:
                    factor *= 0.5 * (1.0 + math.cos(math.pi * used))
                for g in opt.param_groups:
                    g["lr"] = base_lr * factor
            x, y = prefetch.get(step) if prefetch else make_batch(mixer, recipe.task, batch, seed, step, rank)
            # Randomness inside the forward (the codec's quantiser dropout) is a function of
            # seed/step/rank too, so a resumed run draws what an uninterrupted one would have.
            torch.manual_seed((seed * 1_000_003 + step) * 64 + rank)
            x, y = x.to(dev), y.to(dev)
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
            step += 1
            elapsed += time.time() - t0
            running.append(loss.item())
            if rank == 0:
                if step % log_every == 0:
                    emit({"loss": sum(running) / len(running), "grad_norm": float(gnorm),
                          "sec_per_step": round(elapsed / max(step, 1), 3), **(adv.last if adv else {})})
                    running = []
                if val is not None and (step % val_every == 0 or step == steps):
                    metrics = evaluate(model, recipe.task, val, recipe.select_by)
                    candidates = [(metrics, model, "raw")]
                    if average is not None:
                        candidates.append((evaluate(average.model, recipe.task, val, recipe.select_by),
                                           average.model, "ema"))
                        emit({"val": metrics, "val_ema": candidates[1][0]})
                    else:
                        emit({"val": metrics})
                    metrics, chosen, kind = max(candidates, key=lambda c: c[0]["score"])
                    if best is not None and _score_kind(best, recipe.task) != metrics["score_kind"]:
                        emit({"note": f"best checkpoint now chosen by {metrics['score_kind']} "
                                      f"(was {_score_kind(best, recipe.task)}): best reset"})
                        best = None
                    if best is None or metrics["score"] > best.get("score", best["si_sdr"]):
                        best = dict(metrics, step=step, weights=kind)
                        save_weights(run / "best.safetensors", chosen.state_dict(), model.config_dict(),
                                     {"step": step, "elapsed": elapsed, "val": metrics, "recipe": recipe.name,
                                      "weights": kind})
                    save()
                    last_ckpt = time.time()
                elif time.time() - last_ckpt > ckpt_minutes * 60:
                    save()
                    last_ckpt = time.time()
    finally:  # also when a step raises: no batch workers outlive the run
        if prefetch is not None:
            prefetch.close()
    if rank == 0:
        save()
        log.close()
    return best
