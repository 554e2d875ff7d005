"""Weights on disk: safetensors tensors plus a JSON config/metadata block, never pickle.

Why: a shipped model must be loadable by anyone without executing code from the file
(pickle can), and the config that rebuilds the network travels inside the same file so a
weights file can never be paired with the wrong architecture.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: the torch-free tiny engine
# (nets/tiny_numpy.py) reads weights through `check_sha256` and `read_header` without it.


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict[str, Any],
                 meta: dict[str, Any] | None = None) -> str:
    """Atomically write `state` with `config` (and `meta`) as JSON strings in the header.

    Returns the sha256 of the written file."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {"config": json.dumps(config, sort_keys=True), "meta": json.dumps(meta or {}, sort_keys=True)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return sha256_file(path)


class WeightsFileError(ValueError):
    """A file that is there but is not a readable weights file (not safetensors, truncated, or
    its config block not JSON): one line for the CLI instead of the reader's traceback."""


def _not_weights(path, e: Exception) -> WeightsFileError:
    return WeightsFileError(f"{Path(path).name}: not a readable weights file ({e})")


def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """Config and metadata of a weights file, without loading tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            md = f.metadata() or {}
        return json.loads(md.get("config", "{}")), json.loads(md.get("meta", "{}"))
    except (SafetensorError, json.JSONDecodeError) as e:
        raise _not_weights(path, e) from None


def load_weights(path: str | os.PathLike, expected_sha256: str | None = None):
    """Return (state_dict, config, meta); refuse a file whose sha256 differs from the expected."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_sha256(path, expected_sha256)
    config, meta = read_header(path)
    try:
        return load_file(str(path)), config, meta
    except SafetensorError as e:  # a sound header over a truncated or damaged body
        raise _not_weights(path, e) from None


def check_sha256(path: str | os.PathLike, expected_sha256: str | None) -> None:
    """Refuse a missing file, or one whose sha256 differs from the expected (when given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if expected_sha256 is not None:
        got = sha256_file(path)
        if got != expected_sha256:
            raise ValueError(f"weights file {path.name} is corrupt or altered: sha256 {got[:12]}… "
                             f"!= expected {expected_sha256[:12]}…")
