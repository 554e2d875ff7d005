"""The named pretrained models: which file, its sha256, and how to rebuild the network.

Why: users name models (`enhance --tiny`), never files. `models/manifest.json` maps each name
to a weights file and its sha256 (checked on every load); the architecture is rebuilt from the
config stored inside the weights file (see checkpoint.py), through `build_model`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_NAMES = {
    "separator": "separate",
    "enhancer": "enhance",
    "enhancer-tiny": "enhance",
    "codec": "codec",
}

# Research twins: trained and scored beside the shipped models (front-end ablations), exported
# to models/ with a card but not in the manifest, so the CLI never picks one up.
TWIN_NAMES = {
    "separator-stft": "separate",
    "enhancer-tiny-fft": "enhance",
    "enhancer-tiny-dense": "enhance",
}


# Noise floor (dB) that `enhance` keeps when --atten-lim is not given: the input mixed back
# that many dB down under the model's output. It belongs to one set of weights, so it is stored
# with them: the `atten_lim_db` field of the model's manifest entry, written by
# `audioe2e train export --atten-lim DB` (a re-export without it ships no floor, so retrained
# weights never inherit a floor chosen for others). The shipped tiny weights keep 30 dB, chosen
# on the second validation draw (144 clips, seed 999; not the bench's clips), tenth session:
# PESQ-WB 1.870 with no floor, 1.896 / 1.919 / 1.929 / 1.926 / 1.842 at 40 / 30 / 25 / 20 / 12 dB,
# SI-SDRi 5.38 dB with none and 5.39 at 30, DNSMOS OVRL 2.210 → 2.224 (first 48 clips; SIG 2.65 →
# 2.72, BAK 3.33 → 3.17). Why it helps: the tiny mask drives many bins to ~0 between words and
# harmonics, and the holes read as distortion; a floor trades 30 dB of residual noise for them.
# The default enhancer gained +0.007 at 30 dB (its deep filter leaves fewer holes): no floor.
def default_atten_lim_db(name: str) -> float | None:
    """The noise floor `enhance` uses for model `name` when none is asked (None: no floor; a
    loaded model carries it as `model.default_atten_lim_db`)."""
    try:
        return model_info(name).atten_lim_db
    except ModelNotAvailable:
        return None


class ModelNotAvailable(RuntimeError):
    """The named model has no trained weights shipped yet (or its file is missing)."""


def models_dir() -> Path:
    """`$AUDIOE2E_MODELS`, else the `models/` shipped inside the package."""
    env = os.environ.get("AUDIOE2E_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent / "models"


def manifest() -> dict[str, dict[str, Any]]:
    path = models_dir() / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str
    file: Path
    sha256: str
    card: dict[str, Any]
    atten_lim_db: float | None = None  # the enhancers' default noise floor for these weights


def model_info(name: str) -> ModelInfo:
    if name not in MODEL_NAMES:
        raise ModelNotAvailable(f"unknown model '{name}' (known: {', '.join(MODEL_NAMES)})")
    entry = manifest().get(name)
    if entry is None:
        raise ModelNotAvailable(f"model '{name}' has no trained weights in this release yet")
    file = models_dir() / entry["file"]
    if not file.is_file():
        raise ModelNotAvailable(f"model '{name}': weights file {file} is missing")
    card_path = file.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    lim = entry.get("atten_lim_db")
    return ModelInfo(name, MODEL_NAMES[name], file, entry["sha256"], card, None if lim is None else float(lim))


def build_model(config: dict[str, Any]):
    """Rebuild an (untrained) network from its stored config; dispatch on `config['arch']`."""
    arch = config.get("arch")
    if arch in ("tiny_enhancer", "gru_enhancer"):  # one class: the default enhancer is its big sibling
        from .nets.tiny import TinyEnhancer
        return TinyEnhancer.from_config(config)
    if arch == "masknet":
        from .nets.masknet import MaskNet
        return MaskNet.from_config(config)
    if arch == "codec":
        from .nets.codec import Codec
        return Codec.from_config(config)
    raise ValueError(f"unknown architecture in weights file: {arch!r}")


def load_model(name: str, device: str = "cpu", engine: str = "torch"):
    """Load a shipped model by name, verify its sha256, return it ready for inference.

    engine "torch": the `nn.Module` in eval mode on `device`. engine "numpy": the enhancers'
    torch-free CPU engine (`nets/tiny_numpy.py`, which never imports torch), or None where
    that engine cannot run this file (no compiled GRU loop, an architecture it does not know).
    A corrupt, altered or foreign weights file raises ModelNotAvailable either way."""
    info = model_info(name)
    try:
        model = _load_numpy(info) if engine == "numpy" else _load_torch(info, device)
    except (ValueError, OSError, KeyError) as e:  # corrupt, altered or foreign weights file
        raise ModelNotAvailable(f"model '{name}': {e}") from None
    if model is not None:
        model.model_name, model.weights_sha256, model.card = name, info.sha256, info.card
        model.default_atten_lim_db = info.atten_lim_db
    return model


def _load_torch(info: ModelInfo, device: str):
    from .checkpoint import load_weights

    state, config, meta = load_weights(info.file, expected_sha256=info.sha256)
    model = build_model(config)
    model.load_state_dict(state)
    return model.eval().to(device)


def _load_numpy(info: ModelInfo):
    from .checkpoint import check_sha256, read_header
    from .nets import tiny_numpy

    if not tiny_numpy.available():
        return None
    check_sha256(info.file, info.sha256)  # before parsing anything in the file
    if not tiny_numpy.supports(read_header(info.file)[0]):
        return None
    return tiny_numpy.load(info.file)


def list_models() -> list[dict[str, Any]]:
    """One row per known model name: shipped or not, with the card's headline numbers."""
    rows = []
    for name, task in MODEL_NAMES.items():
        row: dict[str, Any] = {"name": name, "task": task, "available": False}
        try:
            info = model_info(name)
        except ModelNotAvailable as e:
            row["status"] = str(e)
            rows.append(row)
            continue
        from .checkpoint import read_header
        config, meta = read_header(info.file)
        row.update(available=True, file=info.file.name, size_bytes=info.file.stat().st_size,
                   sample_rate=config.get("sample_rate"), params=meta.get("params"),
                   latency_ms=meta.get("latency_ms"), metrics=info.card.get("metrics", {}),
                   val_id=info.card.get("val_id"))
        if task == "enhance":  # what `enhance` mixes back by default (None: no floor)
            row["default_atten_lim_db"] = info.atten_lim_db
        rows.append(row)
    return rows
