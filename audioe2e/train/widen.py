"""`python -m audioe2e.train.widen IN OUT --hidden N`: a GRU enhancer's weights with wider GRU
layers that compute the same function, written as a weights file to warm-start a wider recipe
from (`enhancer-gru-df-metric-wide`).

Why: on the training split and on the validation split the shipped default enhancer gains the
same PESQ-WB over its input (+0.62 on 96 mixtures of each, twenty-ninth session), so it
underfits rather than overfits, and its validation score has been flat for thousands of steps:
capacity is the lever left, and on 2 CPU cores a wider model has to start from the trained one.

How (zero-initialised growth, as Net2Net's function-preserving widening, Chen et al. 2016): the
new units get random input and recurrent weights like a fresh layer's, but every weight from a
new unit into an old unit, into the next layer's old units and into the output heads is zero,
so the old units and the output are exactly what they were. The heads' zero columns get a
gradient at once (the new units' activations are not zero), and the new units learn from there.
"""
from __future__ import annotations

import math
import sys

import torch

from ..checkpoint import rewrite_parser, rewrite_weights_file

GATES = 3  # torch's GRU stacks its reset, update and new gates' rows


def _uniform(shape, bound: float, gen: torch.Generator, dtype) -> torch.Tensor:
    """Uniform ±bound, as torch initialises a fresh GRU (±1/√hidden) or Linear (±1/√fan_in)."""
    return ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)


def _grow_rows(w: torch.Tensor, old: int, new: int, blocks: int, gen: torch.Generator,
               bound: float | None = None) -> torch.Tensor:
    """[blocks·old, …] → [blocks·new, …]: each gate block keeps its rows first; the new rows
    are drawn uniform ±`bound` (default 1/√new, a fresh GRU's)."""
    bound = 1 / math.sqrt(new) if bound is None else bound
    out = _uniform((blocks * new, *w.shape[1:]), bound, gen, w.dtype)
    for g in range(blocks):
        out[g * new: g * new + old] = w[g * old: (g + 1) * old]
    return out


def _grow_cols(w: torch.Tensor, old: int, new: int, rows_old: int, blocks: int,
               gen: torch.Generator | None) -> torch.Tensor:
    """Columns old → new. The old units' rows (the first `rows_old` of each of the `blocks`
    gate blocks) get zeros from the new columns; the other rows (new units) get random weights
    there, or zeros where `gen` is None (an output head, `rows_old` 0)."""
    out = torch.zeros((w.shape[0], new), dtype=w.dtype)
    out[:, :old] = w[:, :old]
    if gen is not None:
        fresh = _uniform((w.shape[0], new - old), 1 / math.sqrt(new), gen, w.dtype)
        block = w.shape[0] // blocks
        for g in range(blocks):
            out[g * block + rows_old:(g + 1) * block, old:] = fresh[g * block + rows_old:(g + 1) * block]
    return out


def widen_gru_enhancer(state: dict, config: dict, hidden: int, seed: int = 0) -> tuple[dict, dict]:
    """(state, config) of a `gru_enhancer` → the same network with `hidden` GRU units per layer."""
    if config.get("arch") not in ("gru_enhancer", "tiny_enhancer") or "gru.weight_hh_l0" not in state:
        raise ValueError(f"{config.get('arch')!r} weights are not a GRU enhancer's")
    old, layers = int(config["hidden"]), int(config["layers"])
    if hidden <= old:
        raise ValueError(f"--hidden {hidden} must be above the present {old}")
    gen = torch.Generator().manual_seed(seed)
    s = dict(state)
    # input layer: new units' rows drawn like torch's Linear (±1/√fan_in)
    for name in ("inp.weight", "inp.bias"):
        s[name] = _grow_rows(s[name], old, hidden, 1, gen, bound=1 / math.sqrt(s["inp.weight"].shape[1]))
    for layer in range(layers):
        for kind in ("ih", "hh"):
            # every column is a unit of a widened layer (layer 0's input is the input layer's
            # output): old units' rows get zeros from the new ones, new units' rows random weights
            w = _grow_rows(s[f"gru.weight_{kind}_l{layer}"], old, hidden, GATES, gen)
            s[f"gru.weight_{kind}_l{layer}"] = _grow_cols(w, old, hidden, old, GATES, gen)
            s[f"gru.bias_{kind}_l{layer}"] = _grow_rows(s[f"gru.bias_{kind}_l{layer}"], old, hidden, GATES, gen)
    for head in ("out.weight", "df_out.weight"):
        if head in s:
            s[head] = _grow_cols(s[head], old, hidden, 0, 1, None)
    return s, dict(config, hidden=hidden)


def main(argv: list[str]) -> int:
    p = rewrite_parser("python -m audioe2e.train.widen", __doc__)
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    def widen(state, config, meta):
        state, config = widen_gru_enhancer(state, config, a.hidden, a.seed)
        return state, config, dict(meta, widened=f"GRU widened to {a.hidden} units (same function)")

    return rewrite_weights_file(a.src, a.dst, widen)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
