"""Variable bitrate for a residual-VQ codec: each packet's bits go where the speech is.

Why: with a fixed number of stages per frame a codec spends as much on a pause as on a
vowel. A frame whose latent is close to the codec's latent of silence decodes to near-silence
from its first stages alone, so the encoder codes `SILENT_STAGES` for such frames and shares
the rest of the packet's budget evenly among the others (water-filling, one stage at a time
in frame order); silence gets more only once every speech frame has every stage, and a packet
of pause costs less than its budget. The budget is per packet (`--bitrate` × packet duration,
less the packet's framing), so every packet, and with it the file, stays within the requested
rate; deciding per packet adds no delay, since a packet is written only when it is complete.
Measured on the shipped codec (codec card): at equal measured rate, clean speech gains +0.05
PESQ-NB and +0.11 DNSMOS OVRL over fixed stages. Files carry the per-frame stage counts
(`bitstream.stages`, version 2).

Costs are the ideal code lengths under the static priors the entropy coder uses, so a
packet's payload comes out close to its budget; `PACKET_OVERHEAD_BITS` covers the framing
and the coder's flush.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .bitstream import ABSENT, code_bits
from .bitstream.stages import count_prior, count_symbols
from .entropy import StaticPrior

SILENT_STAGES = 2
PACKET_OVERHEAD_BITS = 14 * 8  # sync, type, seq, varints, CRC (~11 bytes) + coder flush (~3)
SAFETY = 0.97  # ideal code lengths run a little below the coder's, and a file's last packets cost framing too


def packet_budget_bits(kbps: float, frames: int, frame_rate: float) -> float:
    """Bits a packet of `frames` code frames may spend on codes and stage counts."""
    return kbps * 1000 * frames / frame_rate * SAFETY - PACKET_OVERHEAD_BITS


def count_bits(n: np.ndarray, n_q: int, entropy: bool = True) -> float:
    """Bits of a packet's stage counts: ideal code lengths under `bitstream.stages.count_prior`
    (entropy-coded files), else `code_bits(n_q)` each."""
    if not entropy:
        return float(code_bits(n_q) * n.size)
    return float(count_prior(n_q).bits()[count_symbols(n, n_q)].sum()) if n_q > 1 else 0.0


def allocate(cum_bits: np.ndarray, speech: np.ndarray, budget: float, silent: int = SILENT_STAGES,
             entropy: bool = True) -> np.ndarray:
    """Stages per frame for one packet. `cum_bits [n_q, F]`: bits of a frame's first q+1
    codes; `speech [F]` bool. Every frame gets one stage; then frames of silence up to
    `silent`, then speech frames level by level, and only once every speech frame has every
    stage, silence frames beyond `silent` (at high bitrates: quiet frames, which include soft
    onsets and offsets, lose quality at `silent` stages); each step only while the packet's
    cost (codes + counts, counted exactly) stays within `budget`. A packet without speech
    keeps `silent` stages a frame, so pauses cost less than the budget."""
    n_q, F = cum_bits.shape
    n = np.ones(F, dtype=np.int64)
    table = count_prior(n_q).bits() if entropy and n_q > 1 else np.zeros(max(n_q, 1))

    def sym(i: int) -> float:  # bits of frame i's count symbol (0 past the end)
        return float(table[(n[i] - (n[i - 1] if i else n_q)) % n_q]) if i < F else 0.0

    spent = float(cum_bits[0].sum()) + count_bits(n, n_q, entropy)
    groups = [(~speech, min(silent, n_q)), (speech, n_q), (~speech, n_q)]
    for k, (group, cap) in enumerate(groups):
        if k == 2 and not (speech.any() and (n[speech] == n_q).all()):
            break  # silence gets more only from what speech, every stage coded, leaves
        idx = np.flatnonzero(group)
        for level in range(int(n[idx].min()) if idx.size else cap, cap):
            raised = False
            for i in idx[n[idx] == level]:
                before = sym(i) + sym(i + 1)
                n[i] += 1
                extra = cum_bits[level, i] - cum_bits[level - 1, i] + sym(i) + sym(i + 1) - before
                if spent + extra <= budget:
                    spent += extra
                    raised = True
                else:
                    n[i] -= 1
            if not raised:
                break
    return n


class StageAllocator:
    """An `Ae2Writer`'s `packet_codes` hook for a `variable_stages` file: given a packet's
    codes with all `n_q` stages of every frame, returns them with the stages outside the
    packet's budget `ABSENT`; counts the stages kept (`mean_stages`)."""

    def __init__(self, priors: Optional[Sequence[StaticPrior]], n_q: int, codebook_size: int,
                 kbps: float, frame_rate: float,
                 speech_frames: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.kbps, self.frame_rate, self.speech_frames = kbps, frame_rate, speech_frames
        self.entropy = priors is not None  # else raw codes of code_bits(K) bits each
        self.bits = ([p.bits() for p in priors] if self.entropy else
                     [np.full(codebook_size, float(code_bits(codebook_size)))] * n_q)
        self.frames = 0
        self.stages = 0

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        n_q, F = codes.shape
        cum = np.cumsum(np.stack([self.bits[q][codes[q]] for q in range(n_q)]), axis=0)
        speech = (np.asarray(self.speech_frames(codes), dtype=bool) if self.speech_frames is not None
                  else np.ones(F, dtype=bool))
        n = allocate(cum, speech, packet_budget_bits(self.kbps, F, self.frame_rate), entropy=self.entropy)
        self.frames += F
        self.stages += int(n.sum())
        return np.where(np.arange(n_q)[:, None] < n, codes, ABSENT)

    @property
    def mean_stages(self) -> Optional[float]:
        return self.stages / self.frames if self.frames else None
