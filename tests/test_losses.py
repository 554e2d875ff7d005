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
