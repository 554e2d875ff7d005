"""Variable bitrate: per-packet stage allocation within a budget, and what it writes."""
import io

import numpy as np
import pytest

from audioe2e.bitstream import ABSENT, Ae2Reader, Ae2Writer
from audioe2e.entropy import StaticPrior
from audioe2e.ratecontrol import (SILENT_STAGES, StageAllocator, allocate, count_bits,
                                  packet_budget_bits)


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
    for pkt, _ in r.iter_packets():
        r.n_frames += pkt.n_frames
        if pkt.n_frames == fpp:
            assert pkt.size * 8 <= packet_budget_bits(1.5, fpp, 50.0) + 14 * 8 + 32
