"""Fast CPU inference for the tiny butterfly enhancer's torch model: the same function as
`TinyEnhancer.step`, computed by the torch-free engine (`tiny_numpy`).

Why: the tiny model's few MMAC/s are spread over hundreds of small ops per block, so on a CPU
eager PyTorch is dispatch- and memory-pass-bound, not arithmetic-bound. `tiny_numpy` already
groups the arithmetic well (two-factor butterflies with the windows folded in, the GRU in a
C loop); this adapter lets the torch model use it for CPU inference without gradients (the
Python API and the in-process bench) instead of keeping a second copy of that folding.
The engine is rebuilt when a weight changes. Equal to the reference path to float rounding
(tested); training and other devices run `TinyEnhancer.step` as written.
"""
from __future__ import annotations

import torch

from .tiny_numpy import NumpyTinyEnhancer


class FastTinyStep:
    """Callable `(x [B, k·hop], state) -> (y, state)` with `TinyEnhancer.step`'s contract."""

    def __init__(self, model):
        self.model = model
        self._versions = None
        self._build()

    def _param_versions(self):
        return tuple(p._version for p in self.model.parameters())

    def _build(self) -> None:
        state = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        self.engine = NumpyTinyEnhancer(state, self.model.config_dict())
        self._versions = self._param_versions()

    def __call__(self, x: torch.Tensor, state=None):
        if self._param_versions() != self._versions:
            self._build()
        np_state = None if state is None else tuple(s.detach().numpy() for s in state)
        y, new_state = self.engine.step(x.detach().numpy(), np_state)
        return torch.from_numpy(y), tuple(torch.from_numpy(s) for s in new_state)
