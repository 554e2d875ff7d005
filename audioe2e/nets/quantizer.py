"""Residual vector quantiser with factorised, L2-normalised codes and quantiser dropout.

Why: stage q codes the residual left by stages < q, so dropping the last stages lowers the
bitrate gracefully; training with a random number of stages per example (quantiser dropout,
Zeghidour et al. 2021, SoundStream) makes one model serve every bitrate. Each stage looks
codes up in a low-dimensional (8-d), L2-normalised space (Kumar et al. 2023, DAC; Yu et al.
2022): on small data a plain EMA codebook collapsed here to one code per stage, the
factorised cosine lookup keeps the codebook in use. Codebooks learn through the codebook
loss; the encoder through straight-through gradients and the commitment loss.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class VectorQuantizer(nn.Module):
    def __init__(self, dim: int, size: int, code_dim: int = 8):
        super().__init__()
        self.size = size
        self.in_proj = nn.Conv1d(dim, code_dim, 1)
        self.out_proj = nn.Conv1d(code_dim, dim, 1)
        self.codebook = nn.Embedding(size, code_dim)

    def nearest(self, e: torch.Tensor) -> torch.Tensor:
        """e [B, code_dim, F] → indices [B, F] by cosine similarity."""
        b, d, f = e.shape
        flat = F.normalize(e.transpose(1, 2).reshape(-1, d), dim=1)
        cb = F.normalize(self.codebook.weight, dim=1)
        return (flat @ cb.T).argmax(1).view(b, f)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """indices [B, F] → quantised vectors back in model space [B, dim, F]."""
        return self.out_proj(self.codebook(idx.clamp(0, self.size - 1)).transpose(1, 2))

    def forward(self, r: torch.Tensor):
        """Training path on a residual [B, dim, F] → (quantised [B, dim, F], idx, loss [B])."""
        e = self.in_proj(r)
        idx = self.nearest(e.detach())
        q = self.codebook(idx).transpose(1, 2)
        loss = F.mse_loss(e, q.detach(), reduction="none").mean((1, 2)) * 0.25 \
            + F.mse_loss(q, e.detach(), reduction="none").mean((1, 2))
        q = e + (q - e).detach()  # straight-through
        return self.out_proj(q), idx, loss


class ResidualVQ(nn.Module):
    def __init__(self, dim: int, size: int, n_q: int):
        super().__init__()
        self.n_q, self.size = n_q, size
        self.stages = nn.ModuleList(VectorQuantizer(dim, size) for _ in range(n_q))

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_q: int) -> torch.Tensor:
        """z [B, D, F] → codes [B, n_q, F]."""
        r, codes = z, []
        for vq in self.stages[:n_q]:
            idx = vq.nearest(vq.in_proj(r))
            r = r - vq.lookup(idx)
            codes.append(idx)
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] → z [B, D, F]. A negative code (a stage a variable-bitrate frame
        does not code, `bitstream.ABSENT`) adds nothing, as a dropped stage does in training."""
        return sum(self.stages[q].lookup(codes[:, q]) * (codes[:, q] >= 0).unsqueeze(1).to(self.stages[q].codebook.weight.dtype)
                   for q in range(codes.shape[1]))

    def forward(self, z: torch.Tensor, n_q_per_example: torch.Tensor):
        """Quantise with a per-example number of stages; returns (quantised z, VQ loss)."""
        r = z
        out = torch.zeros_like(z)
        loss = z.new_zeros(())
        for q, vq in enumerate(self.stages):
            active = (n_q_per_example > q).to(z.dtype)
            if active.sum() == 0:
                break
            qv, _, l = vq(r)
            qv = qv * active[:, None, None]
            out = out + qv
            r = r - qv
            loss = loss + (l * active).sum() / active.sum()
        return out, loss
