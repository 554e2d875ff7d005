"""Compressor-enhancer codec: learned causal transform → strided conv encoder → residual VQ
→ decoder → learned synthesis.

Why: trained on noisy input against the clean target, the only thing worth spending bits on
is the speech, so the bitstream decodes to denoised speech (compression and enhancement from
one network). Why a frame-domain design: a SoundStream-style stack of waveform-rate convs
(tried first, strides 4·4·4·5) did not learn on 2 CPU cores — its output stayed near silence.
Here the first and last layers are a DFT-initialised strided conv pair (window 20 ms, hop
10 ms, the adaptive front-end of the separator, made causal), so every other layer runs at
100 or 50 frames/s and training starts from a working transform (as Vocos does with an
iSTFT head). Frames: 160-sample hop × 2 = 320 samples → 50 code frames/s at 16 kHz; with
1024-entry codebooks each stage costs 500 bit/s before entropy coding, so 3/6/12 stages
≈ 1.5/3/6 kbit/s. Everything is causal: a code frame needs its 320 samples (20 ms), the
decoder rebuilds the frame from codes up to it, and the synthesis overlap adds half a window
(10 ms, `delay`), so the algorithmic latency is 30 ms.

Streaming uses a finite receptive field: the networks are defined as running on a signal
preceded by `context` zeros, so re-running them on (last `context` units + new units) gives
exactly the whole-signal result (see streaming.ContextStreamer).
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..frontends.stft import dft_basis, sine_window, synthesis_basis
from .causal import CausalConv, CausalConvTranspose, ResUnit, SignedLog, learned_transform_pair
from .quantizer import ResidualVQ


ACTIVITY_STAGES = 6


@dataclass(frozen=True)
class CodecConfig:
    arch: str = "codec"
    task: str = "codec"
    sample_rate: int = 16000
    n_filters: int = 384         # learned transform channels (DFT init: 192 frequencies, re + im)
    window: int = 320            # transform window (20 ms); its hop is window / 2
    channels: int = 256          # network width at 100 and 50 frames/s
    down: int = 2                # transform frames per code frame
    dim: int = 128
    codebook_size: int = 1024
    n_q: int = 12
    context_frames: int = 24     # ≥ the receptive field in code frames (tested)
    # Variable bitrate (`ratecontrol`): a frame whose latent (first 6 stages) lies within this
    # distance of the latent of silence gets few stages. Set from the shipped weights' latents:
    # ~25 % of the frames of validation speech clips fall below it (codec card).
    speech_distance: float = 12.0


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.task = cfg.sample_rate, cfg.task
        self.hop = cfg.window // 2 * cfg.down
        self.codebook_size, self.n_q = cfg.codebook_size, cfg.n_q
        c, d = cfg.channels, cfg.down
        analysis, synthesis = learned_transform_pair(cfg.n_filters, cfg.window)
        self.encoder = nn.Sequential(
            analysis, SignedLog(), CausalConv(cfg.n_filters, c, 1),
            ResUnit(c, 1), ResUnit(c, 2), ResUnit(c, 4), nn.ELU(), CausalConv(c, c, 2 * d, stride=d),
            ResUnit(c, 1), ResUnit(c, 2), nn.ELU(), CausalConv(c, cfg.dim, 3))
        self.decoder = nn.Sequential(
            CausalConv(cfg.dim, c, 3), ResUnit(c, 1), ResUnit(c, 2), nn.ELU(),
            CausalConvTranspose(c, c, 2 * d, stride=d),
            ResUnit(c, 1), ResUnit(c, 2), ResUnit(c, 4), nn.ELU(), CausalConv(c, cfg.n_filters, 3),
            synthesis)
        self.rvq = ResidualVQ(cfg.dim, cfg.codebook_size, cfg.n_q)
        # Static entropy-coding priors per stage (code counts measured on training data).
        self.register_buffer("prior_counts", torch.ones(cfg.n_q, cfg.codebook_size, dtype=torch.int64))

    @classmethod
    def from_config(cls, config: dict) -> "Codec":
        return cls(CodecConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @property
    def delay(self) -> int:
        """Samples by which the decoder output lags the encoder input: the synthesis
        overlap-adds 20 ms windows at a 10 ms hop, so a sample is final only once the next
        window has been added (half a window). Streaming feeds `delay` zeros at the end and
        drops the first `delay` output samples, so files come out aligned and complete."""
        return self.cfg.window // 2

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: one code frame plus the synthesis delay (30 ms)."""
        return self.hop + self.delay

    @property
    def context(self) -> int:
        return self.cfg.context_frames

    # --- bitrate ---------------------------------------------------------------------------
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def stage_kbps(self) -> float:
        """Raw kbit/s of one stage; the same count as `codecapi.nominal_kbps(codec, 1)`."""
        return self.frame_rate() * math.ceil(math.log2(max(self.codebook_size, 2))) / 1000

    def bitrate_to_nq(self, kbps: float) -> int:
        """Largest number of stages whose raw (pre-entropy) rate is ≤ kbps (at least 1)."""
        n = int(kbps / self.stage_kbps() + 1e-6)
        if n < 1:
            raise ValueError(f"bitrate {kbps} kbit/s is below one quantiser stage "
                             f"({self.stage_kbps():.2f} kbit/s)")
        return min(n, self.n_q)

    def speech_frames(self, codes: np.ndarray, silence: np.ndarray) -> np.ndarray:
        """`[F]` bool for codes `[n_q, F]`: frames the variable bitrate treats as speech, those
        whose latent from the first `ACTIVITY_STAGES` stages lies `speech_distance` or farther
        from the latent of `silence` (`[n_q, 1]`, the codes of digital silence:
        `codecapi.silence_codes`), which decodes to silence from few stages."""
        dev = self.rvq.stages[0].codebook.weight.device
        k = min(ACTIVITY_STAGES, int(codes.shape[0]))
        with torch.inference_mode():
            c, s = (torch.as_tensor(np.asarray(a[:k]), device=dev).long().unsqueeze(0) for a in (codes, silence))
            z = self.rvq.decode(c) - self.rvq.decode(s)
            return (z.norm(dim=1)[0] >= self.cfg.speech_distance).cpu().numpy()

    def priors(self, n_q: int):
        """The first `n_q` stages' entropy-coding priors (`StaticPrior`, immutable), built once
        per content of `prior_counts`. Why cached: quantising 12 tables of 1024 counts takes
        ~13 ms, as long as encoding a 2 s file, and `encode`/`decode` ask for them per file
        of a batch; keyed by the counts' bytes, so counts refitted or loaded later are seen."""
        import hashlib

        from ..entropy import StaticPrior
        counts = self.prior_counts[:n_q].cpu().numpy()
        key = (n_q, hashlib.blake2b(counts.tobytes(), digest_size=16).digest())
        cache = self.__dict__.setdefault("_priors_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = [StaticPrior.from_counts(c) for c in counts]
        return list(cache[key])

    # --- whole-signal paths (streaming-consistent: `context` zero frames first) ---------
    def encode_frames(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """x [B, T] with T a multiple of hop → codes [B, n_q, T/hop]."""
        pad = self.context * self.hop
        z = self.encoder(nn.functional.pad(x, (pad, 0)).unsqueeze(1))[..., self.context:]
        return self.rvq.encode(z, n_q)

    def decode_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] → [B, F·hop], lagging the encoded signal by `delay` samples;
        frames before the start are 'silence' latents."""
        z = self.rvq.decode(codes)
        z = torch.cat([self._silence_latent(z), z], -1)
        return self.decoder(z).squeeze(1)[..., self.context * self.hop:]

    def _silence_latent(self, z):
        return torch.zeros(*z.shape[:-1], self.context, device=z.device, dtype=z.dtype)

    @torch.no_grad()
    def reset_synthesis(self) -> None:
        """Put the synthesis on a DFT basis (as at initialisation, but sine-windowed: full rank)
        and fold the change into the conv before it, so the decoder computes the same function
        (to rounding).

        Why: trained, the synthesis had collapsed onto low frequencies (twenty-eighth session:
        singular values 0.008 of the largest by the 100th of 320; a 6 kHz tone needed 23× the
        coefficient norm of a 250 Hz one, against equal norms at initialisation), so the decoder
        reached the band above 1 kHz only through ill-conditioned directions. With frames =
        cᵀW and W0 the new basis (full column rank), c' = (W·W0⁺)ᵀc gives c'ᵀW0 = cᵀW."""
        conv, syn = self.decoder[-2], self.decoder[-1]
        w = syn.weight[:, 0].double()
        length = self.cfg.window
        w0 = synthesis_basis(dft_basis(self.cfg.n_filters, length), length, sine_window(length))
        if torch.linalg.matrix_rank(w0) < length:
            raise ValueError(f"{self.cfg.n_filters} filters cannot span a {length}-sample frame")
        p = (w @ torch.linalg.pinv(w0)).T  # [N, N]: new coefficients from old ones
        weight = torch.einsum("ij,jck->ick", p, conv.weight.double())
        # the conv keeps its weight norm (Adam's steps are a size per weight, so a conv 40×
        # larger would learn 40× slower); the basis takes the scale
        scale = weight.norm() / conv.weight.double().norm()
        conv.weight.copy_((weight / scale).to(conv.weight.dtype))
        conv.bias.copy_((p @ conv.bias.double() / scale).to(conv.bias.dtype))
        syn.weight.copy_((w0 * scale)[:, None, :].to(syn.weight.dtype))

    # --- training --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Training/eval forward: x [B, T] → reconstruction [B, T] (aligned: the `delay` is
        taken out) through the quantiser. In training, each example draws its own number of
        stages (quantiser dropout)."""
        t = x.shape[-1]
        x = nn.functional.pad(x, (0, self.delay + (-(t + self.delay)) % self.hop))
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
        return self.decoder(zq).squeeze(1)[..., self.delay:self.delay + t]

    def training_loss(self, est: torch.Tensor, ref: torch.Tensor, **weights) -> torch.Tensor:
        """Reconstruction loss (`enhancement_loss` with the recipe's weights: −SI-SDR +
        multi-resolution STFT at weight 1) + the VQ losses. History of the shipped run: STFT
        weight 10 until step 9000 (its log-magnitude gradient, spent on the clean targets'
        digital silence, swamped SI-SDR), then 1. Output stays muffled above 1 kHz (at 3
        kbit/s the phase SI-SDR asks for cannot be coded and the MSE-optimal answer is to
        attenuate); moving the weight to compressed magnitudes did not raise PESQ in 750
        steps (recipes.py), nor did a short adversarial run (`codec-gan`); a STOI term (`codec-stoi`)
        raised STOI but lowered DNSMOS (codec card); nor, on the decoder alone, a full-rank DFT
        synthesis, a discriminator or SI-SDR scored below 1 kHz only (`codec-decoder-*`,
        twenty-ninth session: noise or tones, never harmonics, above ~1 kHz)."""
        from ..train.losses import enhancement_loss
        return enhancement_loss(est, ref, **weights) + self._commit

    def validation_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self(x, n_q=self.bitrate_to_nq(3.0))

    # --- streaming -------------------------------------------------------------------------
    def make_encoder(self, n_q: int, device="cpu"):
        from ..streaming import ContextStreamer
        dev = torch.device(device)
        inner = ContextStreamer(lambda x: self._encode_window(x.to(dev), n_q).cpu(),
                                unit_in=self.hop, unit_out=1, context=self.context, pad_last=True)
        return _TailPadded(inner, self.delay)

    def _encode_window(self, x, n_q):
        z = self.encoder(x.unsqueeze(1))
        return self.rvq.encode(z, n_q)[0]  # [n_q, F]  (x is [1, T])

    def make_decoder(self, n_q: int, device="cpu", postfilter: bool = True):
        """Streamer: codes [n_q, F] → samples [1, F·hop]. Codes become latents frame by frame
        (stateless lookup); the decoder runs over latents with a zero-latent start. With
        `postfilter` (what `decode` does unless told not to) its output goes through the
        pitch postfilter (`postfilter.py`: causal, no delay); training and validation score
        the network alone."""
        from ..streaming import ContextStreamer
        dev = torch.device(device)
        inner = ContextStreamer(lambda z: self.decoder(z.to(dev)).squeeze(1).cpu(),
                                unit_in=1, unit_out=self.hop, context=self.context)
        dec = _DropHead(_CodesToLatents(self, inner, n_q, dev), self.delay)
        if postfilter:
            from ..postfilter import PitchPostfilter
            dec = _PostFiltered(dec, PitchPostfilter(self.sample_rate))
        return dec


def _cat(parts: list) -> torch.Tensor:
    parts = [p for p in parts if p.numel()]
    return torch.cat(parts, -1) if parts else torch.zeros(0)


class _TailPadded:
    """Encoder streamer that feeds `tail` zeros before flushing, so the codes cover the
    decoder's `delay` past the last input sample."""

    def __init__(self, inner, tail: int):
        self.inner, self.tail, self.latency = inner, tail, inner.latency

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.feed(x)

    def flush(self) -> torch.Tensor:
        pad = torch.zeros(1, self.tail)
        return _cat([self.inner.feed(pad), self.inner.flush()])


class _DropHead:
    """Decoder streamer that drops the first `n` output samples (the codec's delay)."""

    def __init__(self, inner, n: int):
        self.inner, self.todo = inner, n
        self.latency = inner.latency + n

    def _cut(self, y: torch.Tensor) -> torch.Tensor:
        if self.todo and y.numel():
            k = min(self.todo, y.shape[-1])
            y, self.todo = y[..., k:], self.todo - k
        return y

    def feed(self, codes: torch.Tensor) -> torch.Tensor:
        return self._cut(self.inner.feed(codes))

    def flush(self) -> torch.Tensor:
        return self._cut(self.inner.flush())


class _PostFiltered:
    """Decoder streamer whose samples go through a streaming postfilter. The postfilter works
    in 10 ms hops and holds back a partial one; the decoder emits whole 20 ms frames on the same
    grid (its first, after the dropped delay, is 10 ms), so nothing waits and the latency stays."""

    def __init__(self, inner, post):
        self.inner, self.post, self.latency = inner, post, inner.latency

    def _apply(self, y: torch.Tensor, last: bool = False) -> torch.Tensor:
        z = self.post.feed(y.reshape(-1).numpy()) if y.numel() else np.zeros(0, np.float32)
        if last:
            z = np.concatenate([z, self.post.flush()])
        return torch.from_numpy(z).reshape(1, -1)

    def feed(self, codes: torch.Tensor) -> torch.Tensor:
        return self._apply(self.inner.feed(codes))

    def flush(self) -> torch.Tensor:
        return self._apply(self.inner.flush(), last=True)


class _CodesToLatents:
    def __init__(self, codec: Codec, inner, n_q: int, device: torch.device):
        self.codec, self.inner, self.n_q, self.device = codec, inner, n_q, device
        self.latency = codec.hop

    def feed(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.shape[0] != self.n_q:
            raise ValueError(f"expected {self.n_q} code rows, got {codes.shape[0]}")
        with torch.inference_mode():  # lookups where the codebooks are; latents back on the CPU like the encoder's codes
            z = self.codec.rvq.decode(codes.long().unsqueeze(0).to(self.device)).cpu()  # [1, D, F]
        return self.inner.feed(z)

    def flush(self) -> torch.Tensor:
        return self.inner.flush()
