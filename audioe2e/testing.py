"""Fake models for tests (test-only; no weights needed).

They follow the model contracts the API relies on, so the whole I/O path can be tested
without trained models. The CLI uses them when the environment variable
`AUDIOE2E_FAKE_MODEL` is set (test-only, e.g. to drive a real `audioe2e enhance - -o -`
subprocess): `AUDIOE2E_FAKE_MODEL=identity` or `identity,rate=8000,gain=2`.

- `FakeEnhancer`: a causal FIR `taps` with a `delay`, run by `StatefulStreamer` (identity by
  default, so output == input exactly).
- `FakeSeparator`: non-causal, 2 sources (a moving-average lowpass of x and x minus it), run by
  `OverlapAddStreamer`; it swaps its outputs on windows with a positive sum, so only speaker
  alignment (`streaming.align_sources`) keeps speakers consistent across windows.
- `FakeCodec`: codes = quantised means of `hop`-sample frames (`n_q` identical stages).
"""
from __future__ import annotations

import os

import torch

from .streaming import OverlapAddStreamer, StatefulStreamer, align_sources


class CausalFIR(torch.nn.Module):
    """`step(x [C, k*hop], state) -> (y, state)`: y[t] = sum_i taps[i] * x[t - delay - i]."""

    def __init__(self, hop: int = 160, delay: int = 80, taps=(1.0,), gain: float = 1.0):
        super().__init__()
        self.hop, self.delay, self.latency = hop, delay, delay
        self.taps = torch.tensor(taps, dtype=torch.float32) * gain
        self.mem = delay + len(taps) - 1

    def step(self, x: torch.Tensor, state):
        if state is None:
            state = x.new_zeros(*x.shape[:-1], self.mem)
        full = torch.cat([state, x], dim=-1)
        T, K = x.shape[-1], len(self.taps)
        y = sum(self.taps[i] * full[..., self.mem - self.delay - i: self.mem - self.delay - i + T]
                for i in range(K))
        return y, full[..., T:] if self.mem else full[..., :0]


class FakeEnhancer:
    task = "enhance"
    model_name = "fake-enhancer"
    weights_sha256 = "0" * 64

    def __init__(self, sample_rate: int = 16000, gain: float = 1.0, taps=(1.0,), hop: int = 160,
                 delay: int = 80):
        self.sample_rate = sample_rate
        self.net = CausalFIR(hop, delay, taps, gain)
        self.streamer_kwargs: dict = {}

    def make_streamer(self, device="cpu", **kwargs):
        self.streamer_kwargs = kwargs
        return StatefulStreamer(self.net, device)


class FakeSeparator:
    task = "separate"
    model_name = "fake-separator"
    weights_sha256 = "0" * 64
    n_sources = 2

    def __init__(self, sample_rate: int = 16000, chunk: int = 2048, overlap: int = 512,
                 width: int = 9):
        self.sample_rate, self.chunk, self.overlap, self.width = sample_rate, chunk, overlap, width

    def separate_window(self, x: torch.Tensor) -> torch.Tensor:
        """`[C, T] -> [C, 2, T]`; sources swapped when the window's sum is positive."""
        k = torch.ones(1, 1, self.width) / self.width
        low = torch.nn.functional.conv1d(x[:, None], k, padding=self.width // 2)[:, 0]
        y = torch.stack([low, x - low], dim=1)
        swap = x.sum(dim=-1) > 0
        y[swap] = y[swap].flip(1)
        return y

    def make_streamer(self, device="cpu", **kwargs):
        return OverlapAddStreamer(self.separate_window, self.chunk, self.overlap, align=align_sources)


class _FrameCoder:
    def __init__(self, codec: "FakeCodec", n_q: int, decode: bool):
        self.c, self.n_q, self.decode = codec, n_q, decode
        self.pending = torch.zeros(1, 0)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        if self.decode:  # codes [n_q, F] -> [1, F*hop]
            levels = x[0].float() / (self.c.codebook_size - 1) * 2 - 1
            levels[x[0] < 0] = 0.0  # concealed frames (bitstream.FILL): silence
            return levels.repeat_interleave(self.c.hop)[None]
        self.pending = torch.cat([self.pending, x], dim=-1)
        F = self.pending.shape[-1] // self.c.hop
        frames = self.pending[:, : F * self.c.hop].reshape(F, self.c.hop).mean(-1)
        self.pending = self.pending[:, F * self.c.hop:]
        codes = torch.round((frames.clamp(-1, 1) + 1) / 2 * (self.c.codebook_size - 1)).long()
        return codes[None].repeat(self.n_q, 1)

    def flush(self) -> torch.Tensor:
        if self.decode or self.pending.shape[-1] == 0:
            return torch.zeros(self.n_q if not self.decode else 1, 0,
                               dtype=torch.float32 if self.decode else torch.long)
        pad = self.c.hop - self.pending.shape[-1]
        return self.feed(torch.zeros(1, pad))


class FakeCodec:
    task = "codec"
    model_name = "fake-codec"
    weights_sha256 = "0" * 64
    n_q = 8  # most stages (variable bitrate codes up to these)

    def __init__(self, sample_rate: int = 16000, hop: int = 320, codebook_size: int = 256):
        self.sample_rate, self.hop, self.codebook_size = sample_rate, hop, codebook_size

    def bitrate_to_nq(self, kbps: float) -> int:
        per_stage = self.sample_rate / self.hop * 8 / 1000  # kbit/s of one 8-bit stage
        return max(1, int(round(kbps / per_stage)))

    def priors(self, n_q: int):
        return None

    def make_encoder(self, n_q: int, device="cpu"):
        return _FrameCoder(self, n_q, decode=False)

    def make_decoder(self, n_q: int, device="cpu", postfilter: bool = True):
        # no postfilter here, so the tests' codes decode to exactly the frames they stand for
        return _FrameCoder(self, n_q, decode=True)


def make_fake(task: str, spec: str | None = None):
    """A fake model for `task` from a spec like `identity,rate=8000,gain=2` (see module doc)."""
    spec = spec if spec is not None else os.environ.get("AUDIOE2E_FAKE_MODEL", "identity")
    opts = dict(kv.split("=", 1) for kv in spec.split(",")[1:] if "=" in kv)
    rate = int(opts.get("rate", 16000))
    if task == "enhance":
        return FakeEnhancer(rate, gain=float(opts.get("gain", 1.0)))
    if task == "separate":
        return FakeSeparator(rate)
    if task == "codec":
        return FakeCodec(rate)
    raise ValueError(f"no fake model for task {task!r}")
