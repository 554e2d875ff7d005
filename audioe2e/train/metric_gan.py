"""MetricGAN+ term for the default enhancer and the codec (`codec-metric`): a discriminator
that learns to predict PESQ-WB, and a generator loss that asks it for the best score.

Why: PESQ-WB is the enhancers' target metric, but it is not differentiable, and −SI-SDR plus
compressed spectra left the default enhancer +0.15 above the tiny one where +0.3 is asked.
MetricGAN+ (Fu et al., Interspeech 2021) learns a differentiable stand-in: D(output, clean)
regresses the normalised PESQ of the output, of the noisy input, and 1 for the clean speech
itself; the enhancer then gets the gradient of (D(output, clean) − 1)². CMGAN (Cao et al.
2022) keeps such a term next to its reconstruction losses; so does this one (the recipe's
loss stays, this is added).

Cost on 2 CPU cores: the reference `pesq` package, ~50 ms per 3 s clip, on the first
`examples` clips of each batch (output and noisy input: 2 × examples calls per step).

Same interface as `train.adversarial.Adversarial` (the loop does not know which it has);
checkpoint names `disc.*` / `doptim.*`, never shipped.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..metrics.perceptual import available, missing, pesq_wb
from .adversarial import CriticCheckpoint, _average_over_ranks


def normalised_pesq(ref: torch.Tensor, deg: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """PESQ-WB of each row (`metrics.perceptual.pesq_wb`, the bench's) mapped from [1, 4.5] to
    [0, 1] (MetricGAN's target scale); NaN where PESQ finds no utterance (those rows are left
    out of the critic's loss)."""
    r, d = ref.detach().cpu().numpy(), deg.detach().cpu().numpy()
    out = [pesq_wb(a, b, sample_rate) for a, b in zip(r, d)]
    return torch.tensor([(s - 1.0) / 3.5 for s in out], dtype=torch.float32).clamp(max=1.0)


class MetricDiscriminator(nn.Module):
    """(output, clean) → predicted normalised PESQ. MetricGAN+'s design: the two power-law
    compressed magnitude spectrograms as 2 channels, 4 spectrally normalised 5×5 convs, global
    average pooling, 3 linear layers; here each conv strides 2 × 2 (unstrided, one
    discriminator update on 8 clips took 6 s on one core, more than the enhancer's step). Both signals are scaled by the clean one's RMS first,
    because PESQ ignores level and the enhancers train on mixtures from −60 to −5 dBFS."""

    def __init__(self, n_fft: int = 512, hop: int = 256, channels: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers, c_in = [], 2
        for _ in range(4):
            layers += [spectral_norm(nn.Conv2d(c_in, channels, 5, stride=2, padding=2)), nn.LeakyReLU(0.3)]
            c_in = channels
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(spectral_norm(nn.Linear(channels, 50)), nn.LeakyReLU(0.3),
                                  spectral_norm(nn.Linear(50, 10)), nn.LeakyReLU(0.3),
                                  spectral_norm(nn.Linear(10, 1)))

    def _spec(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.stft(x, self.n_fft, self.hop, window=self.window, return_complex=True)
        return (s.abs() + 1e-8) ** 0.3

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        scale = ref.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-5)
        h = torch.stack([self._spec(est / scale), self._spec(ref / scale)], 1)
        return self.head(self.convs(h).mean((2, 3))).squeeze(-1)


class MetricGAN(CriticCheckpoint):
    def __init__(self, weight: float = 1.0, examples: int = 8, channels: int = 16, lr: float = 5e-4,
                 warmup: int = 200, sample_rate: int = 16000, device="cpu"):
        if not available("pesq_wb"):  # before any step, not as a traceback in the first one
            from .loop import TrainSetupError
            raise TrainSetupError(f"the PESQ critic needs the pesq package: {missing('pesq')}")
        self.weight, self.examples, self.warmup, self.sample_rate = weight, examples, warmup, sample_rate
        self.disc = MetricDiscriminator(channels=channels).to(device)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=lr)
        self.last: dict = {}
        self.start = 0  # the step this term began at (warm-up counts from it)

    @staticmethod
    def _rows(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)[:n]

    def generator_loss(self, est: torch.Tensor, ref: torch.Tensor, step: int, mix=None) -> torch.Tensor:
        """weight × mean (D(output, clean) − 1)²; 0 while the discriminator warms up alone."""
        if step - self.start < self.warmup:
            return est.new_zeros(())
        e, r = self._rows(est, self.examples), self._rows(ref, self.examples)
        for p in self.disc.parameters():
            p.requires_grad_(False)
        try:
            g = (self.disc(e, r) - 1.0).pow(2).mean()
        finally:
            for p in self.disc.parameters():
                p.requires_grad_(True)
        self.last["g_metric"] = g.item()
        return self.weight * g

    def discriminator_step(self, est: torch.Tensor, ref: torch.Tensor, step: int, mix=None) -> float:
        """One least-squares update: D(clean, clean) → 1, D(output, clean) → its normalised
        PESQ, D(noisy, clean) → its normalised PESQ (when the loop passes the noisy input)."""
        n = self.examples
        e, r = self._rows(est.detach(), n), self._rows(ref, n)
        pairs = [(r, torch.ones(r.shape[0])), (e, normalised_pesq(r, e, self.sample_rate))]
        if mix is not None:
            m = self._rows(mix, n)
            pairs.append((m, normalised_pesq(r, m, self.sample_rate)))
        loss = 0.0  # the clean pair always counts, so every rank reaches the all-reduce below
        for x, q in pairs:
            ok = torch.isfinite(q)
            if ok.any():
                loss = loss + (self.disc(x[ok], r[ok]) - q[ok].to(x.device)).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_over_ranks(self.disc.parameters())
        self.opt.step()
        q_out = pairs[1][1]
        self.last.update(d_loss=float(loss.detach()), train_pesq=float(torch.nanmean(q_out)) * 3.5 + 1.0)
        return self.last["d_loss"]
