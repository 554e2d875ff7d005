"""Variable bitrate: per-packet stage allocation within a budget, and what it writes."""
import io

import numpy as np
import pytest

from audioe2e.bitstream import ABSENT, Ae2Reader, Ae2Writer
from audioe2e.entropy import StaticPrior
from audioe2e.ratecontrol import (CARRY_PACKETS, END_BYTES, SILENT_STAGES, StageAllocator, allocate,
                                  count_bits, share_bytes)


def test_allocate_gives_speech_the_bits_and_keeps_to_the_budget():
    rng = np.random.default_rng(0)
    n_q, F = 12, 100
    cum = np.cumsum(rng.uniform(8, 10, (n_q, F)), axis=0)
    speech = np.zeros(F, bool)
    speech[20:70] = True
    for budget in (1200.0, 3000.0, 5600.0, 9000.0):
        n = allocate(cum, speech, budget)
        cost = cum[n - 1, np.arange(F)].sum() + count_bits(n, n_q)
        assert n.min() >= 1 and n.max() <= n_q and cost <= budget
        if n[speech].max() > 1:  # silence gets its few stages first ...
            assert n[~speech].min() >= SILENT_STAGES
        if n[~speech].max() > SILENT_STAGES:  # ... and more only once speech has every stage
            assert (n[speech] == n_q).all()
        assert n[speech].max() - n[speech].min() <= 1  # speech frames share the bits evenly
    n = allocate(cum, speech, 5600.0)  # ~6 stages a frame on average
    assert (n[~speech] == SILENT_STAGES).all() and n[speech].min() >= 8
    assert (allocate(cum, speech, 1e9) == n_q).all()  # bits to spare: every stage everywhere
    assert (allocate(cum, np.zeros(F, bool), 1e9) == SILENT_STAGES).all()  # a pause stays cheap
    assert (allocate(cum, speech, -5.0) == 1).all()  # too few: one stage (the floor)


def test_stage_allocator_writes_a_variable_stage_file_within_budget():
    rng = np.random.default_rng(1)
    n_q, K, F, fpp = 6, 64, 230, 50
    priors = [StaticPrior.from_counts(rng.integers(1, 50, K)) for _ in range(n_q)]
    codes = rng.integers(0, K, (n_q, F))
    h = dict(model="m", model_sha256="0" * 64, model_rate=16000, orig_rate=16000, channels=1,
             frame_size=320, n_q=n_q, codebook_size=K, bitrate_kbps=1.5, variable_stages=True)
    buf = io.BytesIO()
    rc = StageAllocator(priors, n_q, K, 1.5, 50.0, speech_frames=lambda c: c[0] % 2 == 0)
    w = Ae2Writer(buf, h, priors, frames_per_packet=fpp, packet_codes=rc)
    for i in range(0, F, 37):
        w.write(codes[:, i:i + 37])
    w.close(F * 320)
    buf.seek(0)
    reader = Ae2Reader(buf, lambda hh: priors)
    out = np.concatenate(list(reader), axis=1)
    n = (out != ABSENT).sum(0)
    assert out.shape == codes.shape and np.array_equal(np.where(out == ABSENT, codes, out), codes)
    assert 1 < rc.mean_stages < n_q and rc.mean_stages == pytest.approx(n.mean())
    speech = codes[0] % 2 == 0
    assert n[speech].mean() > n[~speech].mean()
    buf.seek(0)
    r = Ae2Reader(buf)
    spent = 0
    for pkt, _ in r.iter_packets():  # DATA packets; END comes last
        r.n_frames += pkt.n_frames
        spent += pkt.size
        assert spent + END_BYTES <= share_bytes(1.5, r.n_frames, 50.0)  # never ahead of the rate
    assert r.bytes_read - r.header_bytes == spent + END_BYTES > 0.95 * share_bytes(1.5, F, 50.0)  # and spends it


@pytest.mark.parametrize("entropy", [True, False])
def test_stage_allocator_carries_a_pause_to_the_speech_within_a_cap(entropy):
    """Packets of pause cost little; what they leave goes to the packets after them, at most
    CARRY_PACKETS packets' worth each; the running total stays within the rate less the END
    packet's bytes; a last packet of one frame still fits."""
    from audioe2e.bitstream.framing import packet_size
    from audioe2e.bitstream.stages import encode_variable
    rng = np.random.default_rng(2)
    n_q, K, fpp, kbps = 12, 1024, 100, 3.0
    priors = [StaticPrior.from_counts(rng.integers(1, 50, K)) for _ in range(n_q)] if entropy else None
    speaking = [True, False, False, True, True, False, True]
    rc = StageAllocator(priors, n_q, K, kbps, 50.0, speech_frames=lambda c: np.full(c.shape[1], talk))
    spent, frames, sizes = 0, 0, []
    for i, talk in enumerate(speaking + [True]):
        F = 1 if i == len(speaking) else fpp
        out = rc(rng.integers(0, K, (n_q, F)), final=i == len(speaking))
        size = packet_size(F, len(encode_variable(out, priors, K)))
        spent, frames = spent + size, frames + F
        sizes.append(size)
        assert rc.stream_bytes == spent  # its count of the bytes is the writer's
        assert spent + END_BYTES <= share_bytes(kbps, frames, 50.0)
        assert size <= share_bytes(kbps, F, 50.0) * (1 + CARRY_PACKETS) + 1
    share = share_bytes(kbps, fpp, 50.0)
    assert sizes[1] < 0.5 * share and sizes[2] < 0.5 * share  # pauses are cheap
    assert sizes[3] > 1.5 * share  # the speech after them gets their bits (up to the cap)
    assert spent + END_BYTES > share_bytes(kbps, frames, 50.0) - 2 * share  # nothing much left unspent


def test_stage_allocator_codes_the_floor_when_nothing_fits():
    """Below one stage a frame the allocator still codes every frame's first stage (the
    bitrate check of `encode` keeps users above that floor)."""
    rng = np.random.default_rng(3)
    n_q, K = 4, 256
    priors = [StaticPrior.from_counts(rng.integers(1, 50, K)) for _ in range(n_q)]
    rc = StageAllocator(priors, n_q, K, 0.05, 50.0)
    out = rc(rng.integers(0, K, (n_q, 50)))
    assert (out[0] != ABSENT).all() and (out[1:] == ABSENT).all() and rc.mean_stages == 1.0
