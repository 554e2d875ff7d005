"""Residual vector quantiser with EMA codebooks and quantiser dropout (SoundStream-style).

Why: stage q codes the residual left by stages < q, so dropping the last stages lowers the
bitrate gracefully; training with a random number of stages per example (quantiser dropout,
Zeghidour et al. 2021) makes one model serve every bitrate. Codebooks learn by exponential
moving averages of assigned vectors (van den Oord et al. 2017), and unused codes are reset
to random encoder outputs so the codebook stays alive on small data.
"""
from __future__ import annotations

import torch
from torch import nn


class VectorQuantizer(nn.Module):
    def __init__(self, dim: int, size: int, decay: float = 0.99):
        super().__init__()
        self.size, self.decay = size, decay
        self.register_buffer("codebook", torch.randn(size, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(size))
        self.register_buffer("ema_sum", self.codebook.clone())

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] → code indices [N] (squared L2)."""
        d = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.codebook.T + self.codebook.pow(2).sum(1)
        return d.argmin(1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codebook[idx.clamp(0, self.size - 1)]

    @torch.no_grad()
    def update(self, x: torch.Tensor, idx: torch.Tensor):
        onehot = torch.zeros(x.shape[0], self.size, device=x.device)
        onehot.scatter_(1, idx[:, None], 1.0)
        count = onehot.sum(0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            summed = onehot.T @ x
            torch.distributed.all_reduce(count)
            torch.distributed.all_reduce(summed)
        else:
            summed = onehot.T @ x
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(summed, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.size * 1e-5) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < 0.01
        if dead.any() and x.shape[0] > 0:
            pick = torch.randint(0, x.shape[0], (int(dead.sum()),), device=x.device)
            self.codebook[dead] = x[pick]
            self.ema_sum[dead] = x[pick]
            self.ema_count[dead] = 1.0


class ResidualVQ(nn.Module):
    def __init__(self, dim: int, size: int, n_q: int):
        super().__init__()
        self.n_q, self.size = n_q, size
        self.stages = nn.ModuleList(VectorQuantizer(dim, size) for _ in range(n_q))

    def encode(self, z: torch.Tensor, n_q: int) -> torch.Tensor:
        """z [B, D, F] → codes [B, n_q, F]."""
        b, d, f = z.shape
        r = z.transpose(1, 2).reshape(-1, d)
        codes = []
        for vq in self.stages[:n_q]:
            idx = vq.nearest(r)
            r = r - vq.lookup(idx)
            codes.append(idx.view(b, f))
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] → z [B, D, F]."""
        out = 0
        for q in range(codes.shape[1]):
            out = out + self.stages[q].lookup(codes[:, q])  # [B, F, D]
        return out.transpose(1, 2)

    def forward(self, z: torch.Tensor, n_q_per_example: torch.Tensor):
        """Training path: quantise with a per-example number of stages; straight-through
        gradients; returns (quantised z, commitment loss)."""
        b, d, f = z.shape
        x = z.transpose(1, 2)  # [B, F, D]
        r = x
        q_total = torch.zeros_like(x)
        commit = 0.0
        for q, vq in enumerate(self.stages):
            active = (n_q_per_example > q).float()[:, None, None]
            if active.sum() == 0:
                break
            flat = r.detach().reshape(-1, d)
            idx = vq.nearest(flat)
            qv = vq.lookup(idx).view(b, f, d)
            if self.training:
                keep = active.expand(b, f, 1).reshape(-1).bool()
                vq.update(flat[keep], idx[keep])
            commit = commit + ((r - qv.detach()).pow(2).mean(-1, keepdim=True) * active).mean()
            q_total = q_total + qv * active
            r = r - qv * active
        zq = x + (q_total - x).detach()
        return zq.transpose(1, 2), commit
