import math

import torch

from audioe2e.train.losses import multires_stft_loss, pit_si_sdr, si_sdr


def test_si_sdr_of_known_signal():
    torch.manual_seed(0)
    ref = torch.randn(16000)
    ref = ref - ref.mean()
    noise = torch.randn(16000)
    noise = noise - noise.mean()
    noise = noise - (noise @ ref) / (ref @ ref) * ref  # orthogonal to ref
    noise = noise / noise.norm() * 3.0 * ref.norm() * 10 ** (-10 / 20)  # 10 dB below 3·ref
    assert math.isclose(si_sdr(3.0 * ref + noise, ref).item(), 10.0, abs_tol=0.05)


def test_si_sdr_scale_invariant():
    ref, est = torch.randn(8000), torch.randn(8000)
    assert math.isclose(si_sdr(est, ref).item(), si_sdr(0.1 * est, ref).item(), abs_tol=1e-3)


def test_pit_is_permutation_invariant_and_finds_order():
    ref = torch.randn(3, 2, 8000)
    est = ref + 0.1 * torch.randn_like(ref)
    swapped = est.flip(1)
    a, perm_a = pit_si_sdr(est, ref)
    b, perm_b = pit_si_sdr(swapped, ref)
    assert torch.allclose(a, b)
    assert perm_a.tolist() == [[0, 1]] * 3
    assert perm_b.tolist() == [[1, 0]] * 3


def test_multires_stft_loss_zero_for_identical():
    x = torch.randn(2, 16000)
    assert multires_stft_loss(x, x).item() < 1e-6
    assert multires_stft_loss(x, torch.randn(2, 16000)).item() > 0.1


def test_enhancement_loss_level_term_catches_what_si_sdr_ignores():
    from audioe2e.train.losses import enhancement_loss, level_error_db
    torch.manual_seed(0)
    ref = torch.randn(2, 4000)
    assert torch.allclose(level_error_db(0.5 * ref, ref), torch.full((2,), 6.0206), atol=1e-3)
    plain = enhancement_loss(0.5 * ref, ref)
    assert torch.isclose(plain, -si_sdr(0.5 * ref, ref).mean())
    with_level = enhancement_loss(0.5 * ref, ref, stft_weight=0.0, level_weight=1.0)
    assert torch.isclose(with_level - plain, torch.tensor(6.0206), atol=1e-3)
    assert enhancement_loss(ref, ref, stft_weight=0.0, level_weight=1.0) < with_level


def test_compressed_spectral_loss_orders_estimates_and_has_finite_gradients():
    """Zero for a perfect estimate, larger for a noisier one, independent of the example's
    level (both scaled by the reference RMS), and finite gradients even for an all-zero
    estimate and digitally silent reference regions (where a log-magnitude loss blows up)."""
    from audioe2e.train.losses import compressed_spectral_loss
    torch.manual_seed(0)
    ref = 0.1 * torch.randn(2, 8000)
    ref[:, :2000] = 0.0
    close = ref + 0.01 * torch.randn_like(ref)
    far = ref + 0.1 * torch.randn_like(ref)
    assert compressed_spectral_loss(ref, ref).item() < 1e-6
    assert compressed_spectral_loss(close, ref) < compressed_spectral_loss(far, ref)
    assert math.isclose(compressed_spectral_loss(100 * far, 100 * ref).item(),
                        compressed_spectral_loss(far, ref).item(), rel_tol=1e-3)
    assert compressed_spectral_loss(0.5 * ref, ref) > 0.01  # a level error counts
    for complex_share in (0.0, 0.3):
        est = torch.zeros(2, 8000, requires_grad=True)
        compressed_spectral_loss(est, ref, complex_share=complex_share).backward()
        assert torch.isfinite(est.grad).all()


def test_compressed_term_is_phase_blind_only_without_complex_share():
    """A phase-inverted estimate has identical magnitudes: the magnitude-only form (the
    codec's) ignores it, the phase-aware form (the enhancers') does not."""
    from audioe2e.train.losses import compressed_spectral_loss
    ref = 0.1 * torch.randn(1, 8000)
    assert compressed_spectral_loss(-ref, ref, complex_share=0.0).item() < 1e-6
    assert compressed_spectral_loss(-ref, ref, complex_share=0.3).item() > 0.1


def _syllables(seconds: float = 3.0, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Speech-like test signal: noise with a falling (−6 dB/octave) spectrum switched on and
    off at a syllable rate of 4 Hz with 10 ms ramps. A noise carrier, not harmonics: a
    harmonic complex puts a few lines in each low band and makes STOI hinge on band edges."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    carrier = torch.cumsum(torch.randn(t.numel(), generator=g), 0)
    carrier = carrier - torch.nn.functional.avg_pool1d(carrier.view(1, 1, -1), 801, 1, 400,
                                                       count_include_pad=False).view(-1)  # drop the drift
    env = (torch.sin(2 * math.pi * 4 * t) > -0.3).float()
    env = torch.nn.functional.avg_pool1d(env.view(1, 1, -1), 161, 1, 80, count_include_pad=False).view(-1)
    return 0.1 * carrier / carrier.abs().max() * env


def test_approx_stoi_follows_pystoi_and_is_one_for_the_reference():
    """The codec's intelligibility term tracks the real measure: 1 for the clean signal, and
    within 0.02 of pystoi's STOI on the same signal under white noise at −5…15 dB SNR, falling
    as the noise rises; it has a gradient."""
    import pytest

    pystoi = pytest.importorskip("pystoi")
    from audioe2e.train.losses import approx_stoi

    clean = _syllables()
    assert approx_stoi(clean[None], clean[None]).item() > 0.999
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    ours, theirs = [], []
    for snr in (-5, 0, 5, 15):
        noisy = clean + noise * clean.norm() / noise.norm() * 10 ** (-snr / 20)
        ours.append(approx_stoi(noisy[None], clean[None]).item())
        theirs.append(pystoi.stoi(clean.numpy(), noisy.numpy(), 16000))
    assert all(abs(a - b) < 0.02 for a, b in zip(ours, theirs)), (ours, theirs)
    assert ours == sorted(ours)
    est = (clean + 0.3 * noise).requires_grad_()
    approx_stoi(est[None], clean[None]).sum().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_frame_pattern_loss_sees_a_pattern_at_the_frame_rate_and_not_level_or_noise():
    """The codec-decoder-pattern term: zero for the reference itself or a louder copy of it,
    small for another unmodulated noise, large when the high band swings with the 20 ms frame."""
    from audioe2e.train.losses import frame_pattern_loss
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 32000, generator=g) * 0.1
    other = torch.randn(2, 32000, generator=g) * 0.1
    gate = 1 + 0.9 * torch.cos(2 * torch.pi * torch.arange(32000) / 320)  # 20 ms period
    assert frame_pattern_loss(ref, ref).item() == 0.0
    assert frame_pattern_loss(3 * ref, ref).item() < 1e-4
    plain = frame_pattern_loss(other, ref).item()
    patterned = frame_pattern_loss(other * gate, ref).item()
    assert plain < 0.5 and patterned > 5 * plain


def test_frame_template_share_finds_a_waveform_repeated_every_frame():
    """codec-decoder-template's term: near 1 for a high-band waveform repeated every 20 ms, near
    1/frames for noise (a different waveform in every frame), in between for their sum."""
    from audioe2e.train.losses import frame_template_share
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 32000, generator=g) * 0.1  # 100 frames of 320
    buzz = (torch.randn(320, generator=g) * 0.1).repeat(100)[None]
    assert frame_template_share(buzz).item() > 0.99
    assert frame_template_share(noise).item() < 0.03
    assert 0.3 < frame_template_share(noise + buzz).item() < 0.7


def test_sisdr_below_hz_ignores_what_lies_above_the_cutoff():
    """With `sisdr_below_hz` the SI-SDR term scores only the band below it: a 3 kHz tone added
    to a 300 Hz reference costs nothing there, and still costs the full-band term."""
    from audioe2e.train.losses import enhancement_loss, lowpass
    t = torch.arange(16000) / 16000
    ref = torch.sin(2 * torch.pi * 300 * t)[None]
    est = ref + 0.5 * torch.sin(2 * torch.pi * 3000 * t + 1.0)[None]
    assert torch.allclose(lowpass(est, 1000.0), ref, atol=1e-3)
    full, low = enhancement_loss(est, ref), enhancement_loss(est, ref, sisdr_below_hz=1000.0)
    assert full > -10 and low < -60
    est_low = 0.5 * ref + 0.5 * torch.sin(2 * torch.pi * 500 * t)[None]  # an error below the cutoff still counts
    assert enhancement_loss(est_low, ref, sisdr_below_hz=1000.0) > -10
