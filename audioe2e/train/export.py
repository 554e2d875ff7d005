"""Export a training run's best weights to `models/` with a model card and manifest entry.

Why: shipped weights must say where they came from. The card (JSON for `audioe2e models`,
Markdown for people) records data, steps, wall time and validation metrics read from the
run itself, never typed in by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import load_weights, save_weights
from ..registry import MODEL_NAMES, build_model


def export_run(run: Path, name: str, models_dir: Path, corpus: Path | None = None,
               which: str = "best") -> dict:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name '{name}' (known: {', '.join(MODEL_NAMES)})")
    state, config, meta = load_weights(run / f"{which}.safetensors")
    if which == "last":
        state = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    model = build_model(config)
    model.load_state_dict(state)
    last_meta = load_weights(run / "last.safetensors")[2] if (run / "last.safetensors").is_file() else meta
    params = sum(p.numel() for p in model.parameters())
    latency_ms = 1000.0 * model.latency / model.sample_rate
    out_meta = {"params": params, "latency_ms": latency_ms, "recipe": meta.get("recipe"),
                "step": meta.get("step"), "train_hours": round(meta.get("elapsed", 0) / 3600, 3)}
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{name}.safetensors"
    sha = save_weights(path, model.state_dict(), config, out_meta)
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if l.strip()]
    vals = [r for r in log if "val" in r]
    card = {
        "name": name, "task": MODEL_NAMES[name], "config": config, **out_meta,
        "total_steps_trained": last_meta.get("step"), "batch": last_meta.get("batch"),
        "segment_seconds": last_meta.get("seconds"),
        "metrics": {f"val_{k}": round(v, 3) for k, v in (meta.get("val") or {}).items()},
        "val_history": [{"step": r["step"], **r["val"]} for r in vals],
    }
    if corpus is not None and (corpus / "summary.json").is_file():
        card["data"] = json.loads((corpus / "summary.json").read_text())
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    man_path = models_dir / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.is_file() else {}
    man[name] = {"file": path.name, "sha256": sha}
    man_path.write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    return card
