"""Adversarial term for a training loop: a discriminator, its optimiser and its losses.

Why a separate object: only the codec's fine-tuning uses it, and the loop stays the same for
every other recipe. Losses as in EnCodec (Défossez et al. 2022): hinge loss for both sides,
and a feature-matching L1 on every discriminator layer, relative to the mean magnitude of the
real features so that each layer weighs alike. Both are computed on a random crop of the
batch (`crop_s`, the first `examples` of it), the same offset for output and reference, to
keep the discriminator's cost on 2 CPU cores well below the generator's (measured on the codec,
batch 8 × 2 s, one thread: 0.4–0.5 s per plain step; with 1 s crops of all 8 examples 2.2–2.4 s,
with 0.5 s crops of 4 examples 0.58 s).

Checkpointing: `state_tensors()` names everything `disc.*` (weights) and `doptim.*` (Adam state),
which never collides with the loop's `model.*` / `optim.*`, and an exported model keeps only
`model.*`, so the discriminator never ships.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..nets.discriminator import MultiScaleSTFTDiscriminator
from .runstate import load_optimizer_state, optimizer_state_tensors


def _average_over_ranks(params) -> None:
    """Under torchrun, average the discriminator's gradients like DDP does the generator's
    (every rank starts from the same seed, so the copies stay identical)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


class CriticCheckpoint:
    """Checkpointing shared by the loop's critics (`self.disc`, `self.opt`): weights as
    `disc.*`, Adam state as `doptim.*`."""

    def state_tensors(self) -> tuple[dict, dict]:
        tensors = {f"disc.{k}": v for k, v in self.disc.state_dict().items()}
        otensors, scalars = optimizer_state_tensors(self.opt)
        tensors.update({"d" + k: v for k, v in otensors.items()})  # optim.* → doptim.*
        return tensors, scalars

    def load_state_tensors(self, state: dict, scalars: dict | None) -> bool:
        """Restore from a checkpoint's tensors; False when it has no discriminator (a run
        that becomes adversarial at this resume starts with a fresh one)."""
        disc = {k[5:]: v for k, v in state.items() if k.startswith("disc.")}
        if not disc:
            return False
        self.disc.load_state_dict(disc)
        if scalars:
            load_optimizer_state(self.opt, {k[1:]: v for k, v in state.items() if k.startswith("doptim.")},
                                 scalars)
        return True


class Adversarial(CriticCheckpoint):
    def __init__(self, weight: float = 1.0, fm_weight: float = 2.0, channels: int = 16,
                 crop_s: float = 1.0, examples: int = 0, lr: float = 1e-4, warmup: int = 0,
                 sample_rate: int = 16000, device="cpu"):
        self.weight, self.fm_weight, self.warmup, self.examples = weight, fm_weight, warmup, examples
        self.crop = int(crop_s * sample_rate)
        self.disc = MultiScaleSTFTDiscriminator(channels=channels).to(device)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.9))
        self.last: dict = {}
        self.start = 0  # the step the adversarial training began at (warm-up counts from it)
        # Both steps take `mix` (the network's input) because train.metric_gan uses it; unused here.

    def _crop(self, est: torch.Tensor, ref: torch.Tensor, step: int):
        if self.examples:  # batches are random draws, so the first n are a random subset
            est, ref = est[:self.examples], ref[:self.examples]
        t = est.shape[-1]
        if t <= self.crop:
            return est, ref
        g = torch.Generator().manual_seed(1_000_003 * step + 17)  # resumable: a function of step
        o = int(torch.randint(0, t - self.crop + 1, (1,), generator=g))
        return est[..., o:o + self.crop], ref[..., o:o + self.crop]

    def generator_loss(self, est: torch.Tensor, ref: torch.Tensor, step: int, mix=None) -> torch.Tensor:
        """weight × hinge(D(est)) + fm_weight × relative feature matching; 0 during warm-up
        (the discriminator learns alone first, so its first gradients are not noise)."""
        if step - self.start < self.warmup:
            return est.new_zeros(())
        e, r = self._crop(est, ref, step)
        for p in self.disc.parameters():
            p.requires_grad_(False)
        try:
            fake = self.disc(e)
            with torch.no_grad():
                real = self.disc(r)
        finally:
            for p in self.disc.parameters():
                p.requires_grad_(True)
        adv = sum(F.relu(1 - lg).mean() for lg, _ in fake) / len(fake)
        fm, n = est.new_zeros(()), 0
        for (_, ff), (_, fr) in zip(fake, real):
            for a, b in zip(ff, fr):
                fm = fm + (a - b).abs().mean() / (b.abs().mean() + 1e-5)
                n += 1
        fm = fm / max(n, 1)
        self.last.update(g_adv=adv.item(), g_fm=fm.item())
        return self.weight * adv + self.fm_weight * fm

    def discriminator_step(self, est: torch.Tensor, ref: torch.Tensor, step: int, mix=None) -> float:
        """One hinge-loss update of the discriminator on (detached output, reference)."""
        e, r = self._crop(est.detach(), ref, step)
        loss = 0.0
        for (lf, _), (lr_, _) in zip(self.disc(e), self.disc(r)):
            loss = loss + F.relu(1 + lf).mean() + F.relu(1 - lr_).mean()
        loss = loss / len(self.disc.discs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_over_ranks(self.disc.parameters())
        torch.nn.utils.clip_grad_norm_(self.disc.parameters(), 5.0)
        self.opt.step()
        self.last["d_loss"] = loss.item()
        return self.last["d_loss"]
