"""Weights on disk: safetensors tensors plus a JSON config/metadata block, never pickle.

Why: a shipped model must be loadable by anyone without executing code from the file
(pickle can), and the config that rebuilds the network travels inside the same file so a
weights file can never be paired with the wrong architecture.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
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
    from safetensors import SafetensorError
    try:
        save_file(tensors, str(tmp), metadata=header)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        tmp.unlink(missing_ok=True)
        why = "no such folder" if not path.parent.is_dir() else getattr(e, "strerror", None) or e
        raise WeightsWriteError(f"cannot write {path}: {why}") from e
    return sha256_file(path)


def rewrite_parser(prog: str, doc: str):
    """The argument parser of a tool built on `rewrite_weights_file`: SRC and DST positional,
    the tool's own options added by the caller; `--help` shows the first paragraph of `doc`."""
    import argparse
    p = argparse.ArgumentParser(prog=prog, description=" ".join(doc.split("\n\n")[0].split()))
    p.add_argument("src", help="weights file or run checkpoint to read")
    p.add_argument("dst", help="weights file to write (nothing is written on an error)")
    return p


def rewrite_weights_file(src: str, dst: str, transform) -> int:
    """The tools that turn one weights file into another (`train.reparam`, `train.widen`,
    `train.lookahead`): `transform(state, config, meta)` → (state, config, meta) written to
    `dst`. A bad input or output (missing, unreadable, the wrong model: `transform` raises
    ValueError, which is prefixed with `src` here; unwritable) gives one `error:` line on
    stderr and exit status 2, and no `dst`."""
    try:
        loaded = load_weights(src)
        try:
            rewritten = transform(*loaded)
        except ValueError as e:
            raise ValueError(f"{src}: {e}") from e
        save_weights(dst, *rewritten)
    except (FileNotFoundError, WeightsFileError, WeightsWriteError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


class WeightsFileError(ValueError):
    """A file that is there but is not a readable weights file (not safetensors, truncated, or
    its config block not JSON): one line for the CLI instead of the reader's traceback."""


class WeightsWriteError(OSError):
    """A weights file that could not be written (no such folder, no permission, disk full):
    one line for the tools that write weights, and no partial file left behind."""


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
