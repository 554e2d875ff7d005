"""The codec's pitch postfilter: streams exactly, leaves unvoiced sound alone, and moves a
noisy voiced sound towards its clean harmonics."""
import numpy as np
import pytest

from audioe2e.postfilter import PitchPostfilter, postfilter

RATE = 16000


def harmonic(f0: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 30))
    return x.astype(np.float32)


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / (np.sum((ref - est) ** 2) + 1e-20)))


@pytest.mark.parametrize("sizes", [[1], [7, 160, 1], [1000, 33]])
def test_chunked_stream_equals_whole_signal(sizes):
    rng = np.random.default_rng(1)
    x = (0.3 * harmonic(130.0) + 0.05 * rng.standard_normal(RATE)).astype(np.float32)
    whole = postfilter(x, RATE)
    pf, parts, i, k = PitchPostfilter(RATE), [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        parts.append(pf.feed(x[i:i + n]))
        assert sum(map(len, parts)) > min(i + n, len(x)) - pf.hop  # holds back less than one hop
        i, k = i + n, k + 1
    got = np.concatenate(parts + [pf.flush()])
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, whole)


def test_unvoiced_noise_and_silence_pass_unchanged():
    x = (0.1 * np.random.default_rng(2).standard_normal(RATE)).astype(np.float32)
    assert np.array_equal(postfilter(x, RATE), x)
    assert not np.any(postfilter(np.zeros(4000, np.float32), RATE))


def test_noisy_voiced_sound_moves_towards_its_harmonics():
    """White noise 10 dB under a 160 Hz voice: the comb at the period averages the noise down
    (by (1 + g²)/(1 + g)², ~2.4 dB at the gain it reaches here) and keeps the harmonics."""
    clean = 0.3 * harmonic(160.0, 2.0)
    noise = np.random.default_rng(3).standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10)
    y = postfilter(clean + noise, RATE)
    assert snr_db(clean, y) > snr_db(clean, clean + noise) + 1.5
    assert abs(np.std(y[RATE:]) / np.std(clean[RATE:]) - 1) < 0.1  # the voice's level is kept


def test_a_period_change_is_followed():
    """A voice that jumps from 120 to 200 Hz: after the jump the filter takes the new period
    (a comb at the old one would cut the new harmonics and lower the level)."""
    clean = np.concatenate([0.3 * harmonic(120.0, 0.5), 0.3 * harmonic(200.0, 0.5, seed=4)])
    y = postfilter(clean, RATE)
    tail = slice(int(0.6 * RATE), None)
    assert snr_db(clean[tail], y[tail]) > 20


def test_codec_decoder_emits_as_soon_as_without_the_postfilter():
    """In the codec the postfilter adds no delay: fed one code frame at a time, the decoder
    gives out as many samples with it as without it, and the two streams are aligned."""
    import torch

    from audioe2e.nets.codec import Codec, CodecConfig
    torch.manual_seed(0)
    c = Codec(CodecConfig(channels=8, n_filters=32, dim=16, codebook_size=16, n_q=2)).eval()
    codes = torch.randint(0, 16, (2, 12))
    plain, filtered = c.make_decoder(2, postfilter=False), c.make_decoder(2)
    a, b = [], []
    for j in range(codes.shape[1]):
        a.append(plain.feed(codes[:, j:j + 1]))
        b.append(filtered.feed(codes[:, j:j + 1]))
        assert a[-1].shape == b[-1].shape
    a.append(plain.flush())
    b.append(filtered.flush())
    a, b = torch.cat(a, -1), torch.cat(b, -1)
    assert a.shape == b.shape and b.shape[-1] == 12 * c.hop - c.delay
    assert np.allclose(b[0].numpy(), postfilter(a[0].numpy(), c.sample_rate), atol=1e-6)
