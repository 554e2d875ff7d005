"""Export a training run's best weights to `models/` with a model card and manifest entry.

Why: shipped weights must say where they came from. The card (JSON for `audioe2e models`,
Markdown for people) records data, steps, wall time and validation metrics read from the
run itself, never typed in by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..checkpoint import load_weights, read_header, save_weights, sha256_file
from ..registry import MODEL_NAMES, TWIN_NAMES, build_model
from .recipes import RECIPES
from .runstate import model_tensors


def export_run(run: Path, name: str, models_dir: Path, corpus: Path | None = None,
               which: str = "best", atten_lim_db: float | None = None,
               blend_with: Path | None = None, blend: float | None = None) -> dict:
    """Write RUN's `which` weights (best | last | ema) as models/NAME.safetensors with its
    cards and manifest entry; `atten_lim_db` is the noise floor `enhance` keeps by default
    for these weights (enhancers only; None: none; see registry.default_atten_lim_db);
    `blend_with` and `blend` ship a mix with other weights instead (`blend_weights`)."""
    tasks = {**MODEL_NAMES, **TWIN_NAMES}
    if name not in tasks:
        raise ValueError(f"unknown model name '{name}' (known: {', '.join(tasks)})")
    if atten_lim_db is not None and (tasks[name] != "enhance" or not 0 < atten_lim_db < float("inf")):
        raise ValueError("--atten-lim is a default noise floor for an enhancer: a finite number of dB > 0")
    if (blend_with is None) != (blend is None):
        raise ValueError("--blend-with and --blend go together: the other weights, and the run's share (0 to 1)")
    if not (run / "log.jsonl").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no log.jsonl; `train run --run {run}` makes one)")
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if l.strip()]
    if which == "ema":
        state, config, meta = _moving_average(run, log)
    else:
        state, config, meta = load_weights(run / f"{which}.safetensors")
        state = model_tensors(state)
        if not meta.get("val"):  # last.safetensors keeps no scores: its step's are in the log
            meta["val"] = _logged_scores(log, meta.get("step"), "val")
    recipe = RECIPES.get(meta.get("recipe"))
    if blend_with is not None:
        state, meta = blend_weights(state, meta, blend_with, blend, config)
    model = build_model(config)
    model.load_state_dict(state)
    if config.get("arch") == "codec":
        if corpus is None:
            raise ValueError("exporting the codec needs --corpus (its entropy priors are counted on training audio)")
        from .priors import fit_priors
        # the mix of clean and noisy inputs it trained on
        model.prior_counts.copy_(fit_priors(model, corpus, clean_share=recipe.clean_share if recipe else None))
    if blend_with is not None:  # the run's logged scores are not these weights': score them here
        meta["val"] = _validate_now(model, tasks[name], corpus, recipe)
    last_meta = read_header(run / "last.safetensors")[1] if (run / "last.safetensors").is_file() else meta
    params = sum(p.numel() for p in model.parameters())
    latency_ms = 1000.0 * model.latency / model.sample_rate
    out_meta = {"params": params, "latency_ms": latency_ms, "recipe": meta.get("recipe"),
                "step": meta.get("step"), "train_hours": round(meta.get("elapsed", 0) / 3600, 3),
                "weights": meta.get("weights", "raw"), **({"blend": meta["blend"]} if "blend" in meta else {})}
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{name}.safetensors"
    sha = save_weights(path, model.state_dict(), config, out_meta)
    # A {"note": "...valsets rewritten..."} line marks a change of valset: history starts after it.
    notes = [i for i, r in enumerate(log) if "valset" in r.get("note", "")]
    vals = [r for r in log[(notes[-1] + 1 if notes else 0):] if "val" in r]
    # A run resumed from a checkpoint older than its last validation replays those steps and
    # logs them again: the later line is the history the weights carry on from.
    vals = sorted({r["step"]: r for r in vals}.values(), key=lambda r: r["step"])
    card = {
        "name": name, "task": tasks[name], "config": config, **out_meta,
        "total_steps_trained": last_meta.get("step"), "batch": last_meta.get("batch"),
        "segment_seconds": last_meta.get("seconds"),
        "metrics": {f"val_{k}": round(v, 3) if isinstance(v, float) else v
                    for k, v in (meta.get("val") or {}).items()},
        # Which valset the metrics are on: a rebuilt corpus can rewrite it, and scores from
        # different valsets must not be read side by side.
        "val_id": last_meta.get("val_id"),
        "val_history": [{"step": r["step"], **r["val"], **({"ema": r["val_ema"]} if "val_ema" in r else {})}
                        for r in vals],
        "training_notes": [r["note"] for r in log if "note" in r],
    }
    if corpus is not None and (corpus / "summary.json").is_file():
        card["data"] = json.loads((corpus / "summary.json").read_text())
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    notes_file = models_dir / f"{name}.notes.md"
    path.with_suffix(".md").write_text(card_markdown(card, notes_file.read_text() if notes_file.is_file() else ""))
    if name in TWIN_NAMES:  # a research twin: card and weights, never a CLI model
        return card
    man_path = models_dir / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.is_file() else {}
    man[name] = {"file": path.name, "sha256": sha}
    if atten_lim_db is not None:
        man[name]["atten_lim_db"] = float(atten_lim_db)
    man_path.write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    return card


def blend_weights(state: dict, meta: dict, other_path: Path, blend: float, config: dict) -> tuple[dict, dict]:
    """(1 − blend) × OTHER + blend × the run's weights, tensor by tensor (WiSE-FT, Wortsman et
    al., CVPR 2022). Why: a fine-tune that trades one measure for another (the codec's PESQ
    critic: PESQ up, DNSMOS down) can be met half-way without training: both ends come from
    one warm start, so the straight line between them stays in one basin. OTHER must be the
    same network (same architecture, tensor names and shapes); integer buffers (the codec's prior counts,
    refitted at export anyway) are the run's."""
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"--blend is the run's share of the weights: a number from 0 to 1, not {blend:g}")
    other, other_config, _ = load_weights(other_path)
    other = model_tensors(other)
    if other_config.get("arch") != config.get("arch") or other.keys() != state.keys() or any(
            other[k].shape != v.shape for k, v in state.items()):
        raise ValueError(f"--blend-with {other_path}: not the same network as the run's weights")
    mixed = {k: torch.lerp(other[k].to(v.dtype), v, blend) if v.is_floating_point() else v
             for k, v in state.items()}
    return mixed, dict(meta, blend={"share": blend, "with": Path(other_path).name,
                                    "with_sha256": sha256_file(other_path)})


def _validate_now(model, task: str, corpus: Path | None, recipe) -> dict | None:
    """Validation scores of MODEL on the corpus valset, as the training loop (and `train
    validate`) report them: `loop.evaluate`, picking by the recipe's metric."""
    if corpus is None:
        return None
    from .loop import evaluate
    from .valsets import load_valset
    return evaluate(model, task, load_valset(corpus, task), recipe.select_by if recipe else None)


def _logged_scores(log: list[dict], step, key: str) -> dict | None:
    """The last `key` ("val" or "val_ema") scores the log gave at `step` (a resumed run may
    have logged a step twice: the later line is the one the weights carry on from); None when
    the checkpoint fell between validations."""
    return next((r[key] for r in reversed(log) if key in r and r.get("step") == step), None)


def _moving_average(run: Path, log: list[dict]) -> tuple[dict, dict, dict]:
    """The moving average kept in RUN/last.safetensors (`--ema`) as exported weights, with the
    validation scores the log gave it at that step (none when the run stopped between checks)."""
    from .ema import WeightAverage
    state, config, meta = load_weights(run / "last.safetensors")
    avg = WeightAverage.from_checkpoint(state)
    if not avg:
        raise ValueError(f"{run}/last.safetensors holds no moving average (the run was trained without --ema)")
    val = _logged_scores(log, meta["step"], "val_ema")
    return avg, config, {"step": meta["step"], "elapsed": meta["elapsed"], "recipe": meta.get("recipe"),
                         "val": val, "weights": "ema"}


def _blend_lines(card: dict) -> list[str]:
    """The card's word on blended weights (`--blend-with`): what they are a mix of, and their
    own validation scores, since the table below scores the run's weights."""
    b = card.get("blend")
    if not b:
        return []
    m = card.get("metrics") or {}
    scored = ", ".join(f"{k} {m['val_' + k]:.3f}" for k in ("pesq_wb", "stoi", "si_sdr") if "val_" + k in m)
    return [f"- blended: {b['share']:g} × these weights + {1 - b['share']:g} × `{b['with']}` (sha256 "
            f"{b['with_sha256'][:16]}…), tensor by tensor; the table below scores the run's weights, "
            f"the blend scored {scored or 'nothing (no corpus at export)'} on the same valset"]


def card_markdown(card: dict, notes: str = "") -> str:
    """The human-readable model card, generated from the same numbers as the JSON card.
    `notes`: the hand-kept section (`models/<name>.notes.md`: bench tables with the command
    that produced them, limits), appended so that re-exporting never loses it."""
    lines = [f"# {card['name']} — model card (generated by `audioe2e train export`)", "",
             f"- task: {card['task']}; architecture: `{card['config'].get('arch')}`; recipe `{card.get('recipe')}`",
             f"- parameters: {card['params']:,}; algorithmic latency: {card['latency_ms']:.1f} ms",
             f"- trained: {card.get('total_steps_trained')} steps (these weights: step {card.get('step')}"
             f"{', the moving average of the weights' if card.get('weights') == 'ema' else ''}), "
             f"{card.get('train_hours')} h of training-process time, batch {card.get('batch')} × "
             f"{card.get('segment_seconds')} s",
             *[f"- {n}: the steps and hours above count from there" for n in card.get("training_notes", [])
               if n.startswith("warm start from")][:1],
             *_blend_lines(card),
             "", "## Validation (fixed on-disk valset of unseen speakers; SI-SDR in dB)", "",
             f"Valset fingerprint `{card.get('val_id') or 'not recorded'}` (scores compare only "
             "within one fingerprint).", ""]
    history = card.get("val_history", [])
    # STOI only where the run logged it (since the thirteenth session; a recipe may choose
    # its best checkpoint by it), so older cards keep their columns.
    stoi = any("stoi" in r for r in history)
    lines += ["| step | SI-SDR | SI-SDRi | MR-STFT distance | PESQ-WB |" + (" STOI |" if stoi else "")
              + " EMA weights: SI-SDR / PESQ-WB |",
              "|---:|---:|---:|---:|---:|" + ("---:|" if stoi else "") + "---:|"]
    for r in history:
        mr = f"{r['mrstft']:.3f}" if "mrstft" in r else "–"
        pq = f"{r['pesq_wb']:.2f}" if "pesq_wb" in r else "–"
        st = (f" {r['stoi']:.3f} |" if "stoi" in r else " – |") if stoi else ""
        e = r.get("ema") or {}
        em = " / ".join(f"{e[k]:.2f}" for k in ("si_sdr", "pesq_wb") if k in e) or "–"
        lines.append(f"| {r['step']} | {r['si_sdr']:.2f} | {r['si_sdri']:.2f} | {mr} | {pq} |{st} {em} |")
    if card.get("training_notes"):
        lines += ["", "Training log notes (in order):", ""] + [f"- {n}" for n in card["training_notes"]]
    data = card.get("data")
    if data:
        lines += ["", "## Training data", "", "Corpus built by `audioe2e corpus build` (README, Data); "
                  "mixtures synthesised on the fly. Validation speakers and noise tracks are never trained on.", "",
                  "| split | kind | speakers | files | hours |", "|---|---|---:|---:|---:|"]
        for r in data.get("splits", []):
            lines.append(f"| {r['split']} | {r['kind']} | {r['speakers']} | {r['files']} | {r['hours']} |")
    lines += ["", "## Config", "", "```json", json.dumps(card["config"], indent=1), "```", ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    return "\n".join(lines)
