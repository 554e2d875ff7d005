"""`python -m audioe2e.train.lookahead IN OUT --frames L`: a GRU enhancer's weights, or a whole
run checkpoint (moving average, Adam moments and critic included), with L frames of lookahead
at the GRU input, computing the same function delayed by L hops.

Why: the issue allows the default enhancer lookahead, and on 2 CPU cores a model that tries it
has to start from the trained one, not from scratch. With lookahead the GRU input of frame t is
[features(t), features(t + L)] (`nets/tiny.py`), so the input layer gains one block of columns;
at zero they leave the output exactly that of the old model on the input delayed by L hops
(tested), and they get a gradient at once. Growing a run checkpoint rather than the exported
weights keeps the trained PESQ critic and the optimiser's moments, so training goes on where it
stopped instead of re-learning the critic (a fresh one cost the widened run its first steps).
"""
from __future__ import annotations

import sys

import torch

from ..checkpoint import rewrite_parser, rewrite_weights_file
from .recipes import RECIPES, optimised_names

INPUT = "inp.weight"  # the GRU's input layer: [hidden, features] → [hidden, 2 · features]


def add_lookahead(state: dict, config: dict, frames: int, frozen: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(state, config) of a look-ahead-free GRU enhancer → the same with `frames` (≥ 1) of
    lookahead. `state` is an exported model's (bare names) or a run checkpoint's (`model.` and
    `ema.` weights, `optim.` moments in the order of `recipes.optimised_names` with the `frozen`
    prefixes of the recipe that saved them); the input layer grows in each, nothing else
    changes (the critic's `disc.` tensors neither)."""
    from ..registry import build_model
    if config.get("arch") not in ("gru_enhancer", "tiny_enhancer"):
        raise ValueError(f"{config.get('arch')!r} weights are not a GRU enhancer's")
    if int(config.get("lookahead", 0)):
        raise ValueError(f"the weights already look ahead {config['lookahead']} frame(s)")
    names = [k for k in (INPUT, "model." + INPUT, "ema." + INPUT) if k in state]
    if any(k.startswith("optim.") for k in state):
        idx = optimised_names(build_model(config), frozen).index(INPUT)
        names += [k for k in (f"optim.{idx}.exp_avg", f"optim.{idx}.exp_avg_sq") if k in state]
    if not names:
        raise ValueError(f"no {INPUT} in the weights")
    s = dict(state)
    for k in names:
        s[k] = torch.cat([s[k], torch.zeros_like(s[k])], 1)
    return s, dict(config, lookahead=frames)


def main(argv: list[str]) -> int:
    p = rewrite_parser("python -m audioe2e.train.lookahead", __doc__)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--recipe", help="a run checkpoint's new recipe (the one that `--resume` continues)")
    a = p.parse_args(argv)
    for bad, why in ((a.frames < 1, f"--frames {a.frames} must be at least 1"),
                     (a.recipe is not None and a.recipe not in RECIPES, f"unknown recipe {a.recipe!r}")):
        if bad:
            print(f"error: {why}", file=sys.stderr)
            return 2

    def grow(state, config, meta):
        saved_by = RECIPES.get(meta.get("recipe"))
        state, config = add_lookahead(state, config, a.frames, saved_by.frozen if saved_by else ())
        meta = {k: v for k, v in meta.items() if k != "best"}  # its best was scored without lookahead
        if a.recipe:
            meta["recipe"] = a.recipe
        return state, config, dict(meta, lookahead=f"{a.frames} frame(s) added (same function, delayed)")

    return rewrite_weights_file(a.src, a.dst, grow)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
