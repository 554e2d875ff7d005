"""Fast CPU inference for the tiny butterfly enhancer: the same function as `TinyEnhancer.step`.

Why: the tiny model's few MMAC/s are spread over hundreds of small ops per block, so on a CPU
it is dispatch- and memory-pass-bound, not arithmetic-bound. This path keeps every learned
weight and changes only how the arithmetic is grouped:
- the learned butterfly runs in its two-factor form (`Butterfly.two_factor_blocks`: two batched
  matmuls instead of 8 elementwise stages), in real arithmetic, with the learned analysis and
  synthesis windows, the Hermitian extension and "keep n/2+1 bins" / "keep the real part"
  folded into those matrices;
- the GRU recurrence runs in a small C loop (`gru_kernel`), its input projections as one
  matmul per block (torch's GRU where the extension was not built).
Equal to the reference path to float rounding (tested); used only for CPU inference without
gradients — training and other devices run `TinyEnhancer.step` as written.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import gru_kernel
from .tiny import overlap_add


def _real_form(c: torch.Tensor) -> torch.Tensor:
    """Complex [..., i, o] → real [..., 2, i, 2, o] acting on (re, im) stacked inputs:
    (a + ib)(C) = (a·Cr − b·Ci) + i(a·Ci + b·Cr)."""
    top = torch.stack([c.real, c.imag], -2)       # input re → (out re, out im)
    bottom = torch.stack([-c.imag, c.real], -2)   # input im → (out re, out im)
    return torch.stack([top, bottom], -4)


class FastTinyStep:
    """Callable `(x [B, k·hop], state) -> (y, state)` with `TinyEnhancer.step`'s contract."""

    def __init__(self, model):
        if model.cfg.frontend != "butterfly":
            raise ValueError("the fast path is for the butterfly front-end")
        self.model = model
        self.n, self.hop, self.hidden, self.layers = model.n, model.hop, model.cfg.hidden, model.cfg.layers
        self._versions = None
        self._build()

    def _param_versions(self):
        return tuple(p._version for p in self.model.parameters())

    @torch.no_grad()
    def _build(self) -> None:
        m, n = self.model, self.n
        bins = n // 2 + 1
        # Analysis: frame[perm] · win_a[perm] → group q of b positions → two factors.
        fly_a = m.analysis.fly
        first, second = fly_a.two_factor_blocks()  # [G, b, b], [b, G, G] complex
        groups, b = first.shape[0], first.shape[1]
        self.groups, self.b = groups, b
        self.perm = fly_a.perm.clone()
        win = m.win_a.detach()[self.perm].view(groups, b, 1)
        a1 = first * win  # fold the window into the rows of the first factor
        # Real input: only the "re" input rows of the real form are needed: [G, b, 2, b].
        self.a1 = _real_form(a1)[:, 0].contiguous()  # [G, b(in r), 2(out re/im), b(out r)]
        keep = -(-bins // b)  # output groups q' that hold the first n/2+1 bins
        self.keep = keep
        self.a2 = _real_form(second[:, :, :keep]).contiguous()  # [b, 2, G, 2, keep]
        # Synthesis: Hermitian extension + bit reversal as one gather with signs on imag.
        fly_s = m.synthesis.fly
        first_s, second_s = fly_s.two_factor_blocks()
        j = fly_s.perm
        src_bin = torch.where(j <= n // 2, j, n - j)
        sign = torch.where((j == 0) | (j == n // 2), 0.0, torch.where(j < n // 2, 1.0, -1.0))
        self.s_bin, self.s_sign = src_bin.clone(), sign.float().view(groups, b)
        self.s1 = _real_form(first_s).contiguous()  # [G, 2, b, 2, b]
        # Only the real part of the output is used; fold the synthesis window into it.
        win_s = m.win_s.detach().view(groups, b)  # output index q'·b + r
        s2 = _real_form(second_s)[:, :, :, 0]  # [b(r), 2, G(q), G(q')]
        self.s2 = (s2 * win_s.t().reshape(b, 1, 1, groups)).contiguous()
        # Mask network weights.
        self.inp_w, self.inp_b = m.inp.weight.detach(), m.inp.bias.detach()
        self.out_w, self.out_b = m.out.weight.detach(), m.out.bias.detach()
        g = m.gru
        self.w_ih = [getattr(g, f"weight_ih_l{i}").detach() for i in range(self.layers)]
        self.b_ih = [getattr(g, f"bias_ih_l{i}").detach() for i in range(self.layers)]
        self.w_hh_t = [np.ascontiguousarray(getattr(g, f"weight_hh_l{i}").detach().numpy().T)
                       for i in range(self.layers)]
        self.b_hh = [getattr(g, f"bias_hh_l{i}").detach().numpy().copy() for i in range(self.layers)]
        self.compress = float(m.cfg.compress)
        self._versions = self._param_versions()

    def analysis(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [F, n] (unwindowed) → (re, im) [F, n/2+1]."""
        f = frames.shape[0]
        x = frames[:, self.perm].view(f, self.groups, self.b)
        y1 = torch.einsum("fqr,qrcs->fcqs", x, self.a1)  # [F, 2, G, b]
        y2 = torch.einsum("fcqr,rcqdp->fdpr", y1, self.a2)  # [F, 2, keep, b]
        y2 = y2.reshape(f, 2, self.keep * self.b)[..., : self.n // 2 + 1]
        return y2[:, 0], y2[:, 1]

    def synthesis(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        """(re, im) [F, n/2+1] → windowed output frames [F, n]."""
        f = re.shape[0]
        xr = re[:, self.s_bin].view(f, self.groups, self.b)
        xi = im[:, self.s_bin].view(f, self.groups, self.b) * self.s_sign
        x = torch.stack([xr, xi], 1)  # [F, 2, G, b]
        y1 = torch.einsum("fcqr,qcrds->fdqs", x, self.s1)  # [F, 2, G, b]
        y2 = torch.einsum("fcqr,rcqp->fpr", y1, self.s2)  # [F, G, b]
        return y2.reshape(f, self.n)

    def gru(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, K, H], h [layers, B, H] → (outputs [B, K, H], new h)."""
        if not gru_kernel.available():
            return self.model.gru(x, h)
        h = h.detach().numpy().copy()  # [layers, B, H]: each h[i] is a contiguous view
        for i in range(self.layers):
            gi = nn.functional.linear(x, self.w_ih[i], self.b_ih[i]).numpy()
            x = torch.from_numpy(gru_kernel.gru_layer(gi, h[i], self.w_hh_t[i], self.b_hh[i]))
        return x, torch.from_numpy(h)

    def __call__(self, x: torch.Tensor, state=None):
        if self._param_versions() != self._versions:
            self._build()
        m, n, hop = self.model, self.n, self.hop
        bsz = x.shape[0]
        prev_in, h, tail = state if state is not None else m.initial_state(bsz, x.device)
        buf = torch.cat([prev_in, x], -1)
        frames = buf.unfold(-1, n, hop)  # [B, K, n]
        k = frames.shape[1]
        re, im = self.analysis(frames.reshape(bsz * k, n))
        feat = torch.hypot(re, im).add_(1e-8).pow_(self.compress)  # as in the reference
        hidden = torch.relu(nn.functional.linear(feat, self.inp_w, self.inp_b)).view(bsz, k, -1)
        hidden, h = self.gru(hidden.contiguous(), h)
        mask = torch.sigmoid(nn.functional.linear(hidden.reshape(bsz * k, -1), self.out_w, self.out_b))
        out_frames = self.synthesis(re * mask, im * mask).view(bsz, k, n)
        y, tail = overlap_add(out_frames, tail, hop)
        return y, (buf[:, -(n - hop):], h, tail)
