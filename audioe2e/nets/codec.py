"""Compressor-enhancer codec: causal strided-conv encoder → residual VQ → causal decoder.

Why: trained on noisy input against the clean target, the only thing worth spending bits on
is the speech, so the bitstream decodes to denoised speech (compression and enhancement from
one network). Strides 4·4·4·5 = 320 samples → 50 code frames/s at 16 kHz; with 1024-entry
codebooks each stage costs 500 bit/s before entropy coding, so 3/6/12 stages ≈ 1.5/3/6 kbit/s.
Everything is causal: a frame's code needs its 320 samples (20 ms), the decoder rebuilds the
frame from codes up to it, so the algorithmic latency is 20 ms.

Streaming uses a finite receptive field: the networks are defined as running on a signal
preceded by `context` zeros, so re-running them on (last `context` units + new units) gives
exactly the whole-signal result (see streaming.ContextStreamer).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .quantizer import ResidualVQ


@dataclass(frozen=True)
class CodecConfig:
    arch: str = "codec"
    task: str = "codec"
    sample_rate: int = 16000
    channels: int = 16
    strides: tuple = (4, 4, 4, 5)
    dim: int = 128
    codebook_size: int = 1024
    n_q: int = 12
    context_frames: int = 16     # encoder/decoder history (frames) used when streaming


class CausalConv(nn.Conv1d):
    """Conv1d padded on the left only. Stride 1: output t sees inputs ≤ t. Stride s: output
    j sees inputs < (j+1)·s, i.e. its whole block — not only the block's first sample, which
    would leave the decoder to predict the rest of each frame from the past."""

    def forward(self, x):
        pad = (self.kernel_size[0] - 1) * self.dilation[0] - (self.stride[0] - 1)
        return super().forward(nn.functional.pad(x, (pad, 0)))


class CausalConvTranspose(nn.ConvTranspose1d):
    """Upsampling by `stride` with kernel 2·stride; keeping the first T·stride outputs makes
    output block t depend on input frames ≤ t only."""

    def forward(self, x):
        return super().forward(x)[..., : x.shape[-1] * self.stride[0]]


class ResUnit(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.net = nn.Sequential(nn.ELU(), CausalConv(c, c // 2, 3, dilation=dilation), nn.ELU(), nn.Conv1d(c // 2, c, 1))

    def forward(self, x):
        return x + self.net(x)


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.task = cfg.sample_rate, cfg.task
        self.hop = 1
        for s in cfg.strides:
            self.hop *= s
        self.codebook_size, self.n_q = cfg.codebook_size, cfg.n_q
        c = cfg.channels
        enc = [CausalConv(1, c, 7)]
        for s in cfg.strides:
            enc += [ResUnit(c, 1), ResUnit(c, 3), nn.ELU(), CausalConv(c, 2 * c, 2 * s, stride=s)]
            c *= 2
        enc += [nn.ELU(), CausalConv(c, cfg.dim, 3)]
        self.encoder = nn.Sequential(*enc)
        dec = [CausalConv(cfg.dim, c, 7)]
        for s in reversed(cfg.strides):
            dec += [nn.ELU(), CausalConvTranspose(c, c // 2, 2 * s, stride=s), ResUnit(c // 2, 1), ResUnit(c // 2, 3)]
            c //= 2
        dec += [nn.ELU(), CausalConv(c, 1, 7)]
        self.decoder = nn.Sequential(*dec)
        self.rvq = ResidualVQ(cfg.dim, cfg.codebook_size, cfg.n_q)
        # Static entropy-coding priors per stage (code counts measured on training data).
        self.register_buffer("prior_counts", torch.ones(cfg.n_q, cfg.codebook_size, dtype=torch.int64))

    @classmethod
    def from_config(cls, config: dict) -> "Codec":
        config = dict(config)
        config["strides"] = tuple(config.get("strides", CodecConfig.strides))
        return cls(CodecConfig(**config))

    def config_dict(self) -> dict:
        d = asdict(self.cfg)
        d["strides"] = list(d["strides"])
        return d

    @property
    def latency(self) -> int:
        return self.hop

    @property
    def context(self) -> int:
        return self.cfg.context_frames

    # --- bitrate ---------------------------------------------------------------------------
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def stage_kbps(self) -> float:
        return self.frame_rate() * torch.log2(torch.tensor(float(self.codebook_size))).item() / 1000

    def bitrate_to_nq(self, kbps: float) -> int:
        """Largest number of stages whose raw (pre-entropy) rate is ≤ kbps (at least 1)."""
        n = int(kbps / self.stage_kbps() + 1e-6)
        if n < 1:
            raise ValueError(f"bitrate {kbps} kbit/s is below one quantiser stage "
                             f"({self.stage_kbps():.2f} kbit/s)")
        return min(n, self.n_q)

    def priors(self, n_q: int):
        from ..entropy import StaticPrior
        return [StaticPrior.from_counts(self.prior_counts[q].cpu().numpy()) for q in range(n_q)]

    # --- whole-signal paths (streaming-consistent: `context` zero frames first) ---------
    def encode_frames(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """x [B, T] with T a multiple of hop → codes [B, n_q, T/hop]."""
        pad = self.context * self.hop
        z = self.encoder(nn.functional.pad(x, (pad, 0)).unsqueeze(1))[..., self.context:]
        return self.rvq.encode(z, n_q)

    def decode_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] → [B, F·hop]; frames before the start are 'silence' codes."""
        z = self.rvq.decode(codes)
        z = torch.cat([self._silence_latent(z), z], -1)
        return self.decoder(z).squeeze(1)[..., self.context * self.hop:]

    def _silence_latent(self, z):
        return torch.zeros(*z.shape[:-1], self.context, device=z.device, dtype=z.dtype)

    # --- training --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Training/eval forward: x [B, T] → reconstruction [B, T] through the quantiser.
        In training, each example draws its own number of stages (quantiser dropout)."""
        t = x.shape[-1]
        x = nn.functional.pad(x, (0, (-t) % self.hop))
        b = x.shape[0]
        z = self.encoder(x.unsqueeze(1))
        if n_q is None:
            # Quantiser dropout on half the examples (SoundStream): the rest use every stage.
            n_q_ex = torch.full((b,), self.n_q, device=x.device)
            if self.training:
                drop = torch.rand(b, device=x.device) < 0.5
                n_q_ex = torch.where(drop, torch.randint(1, self.n_q + 1, (b,), device=x.device), n_q_ex)
        else:
            n_q_ex = torch.full((b,), n_q, device=x.device)
        zq, self._commit = self.rvq(z, n_q_ex)
        return self.decoder(zq).squeeze(1)[..., :t]

    def training_loss(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """−SI-SDR + multi-resolution STFT (as the enhancers) + the VQ losses. A spectral
        loss alone barely moved on CPU-scale training (checked: an unquantised autoencoder
        stayed near silence after 80 steps), SI-SDR gets the waveform in tens of steps and the
        spectral term sets the level that SI-SDR ignores."""
        from ..train.losses import enhancement_loss
        return enhancement_loss(est, ref, stft_weight=1.0) + self._commit

    def validation_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self(x, n_q=self.bitrate_to_nq(3.0))

    # --- streaming -------------------------------------------------------------------------
    def make_encoder(self, n_q: int, device="cpu"):
        from ..streaming import ContextStreamer
        dev = torch.device(device)
        return ContextStreamer(lambda x: self._encode_window(x.to(dev), n_q).cpu(),
                               unit_in=self.hop, unit_out=1, context=self.context, pad_last=True)


    def _encode_window(self, x, n_q):
        z = self.encoder(x.unsqueeze(1))
        return self.rvq.encode(z, n_q)[0]  # [n_q, F]  (x is [1, T])

    def make_decoder(self, n_q: int, device="cpu"):
        """Streamer: codes [n_q, F] → samples [1, F·hop]. Codes become latents frame by frame
        (stateless lookup); the decoder runs over latents with a zero-latent start."""
        from ..streaming import ContextStreamer
        dev = torch.device(device)
        inner = ContextStreamer(lambda z: self.decoder(z.to(dev)).squeeze(1).cpu(),
                                unit_in=1, unit_out=self.hop, context=self.context)
        return _CodesToLatents(self, inner, n_q)


class _CodesToLatents:
    def __init__(self, codec: Codec, inner, n_q: int):
        self.codec, self.inner, self.n_q = codec, inner, n_q
        self.latency = codec.hop

    def feed(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.shape[0] != self.n_q:
            raise ValueError(f"expected {self.n_q} code rows, got {codes.shape[0]}")
        with torch.inference_mode():
            z = self.codec.rvq.decode(codes.long().unsqueeze(0))  # [1, D, F]
        return self.inner.feed(z)

    def flush(self) -> torch.Tensor:
        return self.inner.flush()
