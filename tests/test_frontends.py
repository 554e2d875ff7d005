"""Front-ends equal their analytic twins at initialisation and invert exactly."""
import torch

from audioe2e.frontends.butterfly import Butterfly, ButterflyIRFFT, ButterflyRFFT
from audioe2e.frontends.learned import ConvFrontEnd
from audioe2e.frontends.stft import stft_reference


def test_butterfly_equals_rfft_at_init():
    x = torch.randn(4, 3, 256)
    got = ButterflyRFFT(256)(x)
    ref = torch.fft.rfft(x)
    assert torch.allclose(got, ref, atol=1e-5 * ref.abs().max().item(), rtol=0)


def test_butterfly_inverse_round_trip():
    x = torch.randn(5, 256)
    fwd, inv = ButterflyRFFT(256), ButterflyIRFFT(256)
    assert torch.allclose(inv(fwd(x)), x, atol=1e-5)


def test_butterfly_training_path_equals_factorised_path_after_learning():
    fly = Butterfly(64)
    with torch.no_grad():
        fly.twiddles.add_(0.3 * torch.randn_like(fly.twiddles))  # no longer a DFT, not symmetric
    x = torch.randn(7, 64, dtype=torch.complex64)
    fly.train()
    dense = fly(x)
    fly.eval()
    assert torch.allclose(dense, fly(x), atol=1e-4)


def test_butterfly_two_factor_form_is_the_same_map_after_learning():
    """The fast inference form (two block-sparse factors) equals the 8 stages, for even and
    odd stage counts, on learned (non-DFT) twiddles."""
    torch.manual_seed(1)
    for n in (8, 128, 256):
        fly = Butterfly(n)
        with torch.no_grad():
            fly.twiddles.add_(0.3 * torch.randn_like(fly.twiddles))
        first, second = fly.two_factor_blocks()
        groups, b = first.shape[0], first.shape[1]
        x = torch.randn(5, n, dtype=torch.complex64)
        xp = x[..., fly.perm].reshape(5, groups, b)
        y1 = torch.einsum("fqr,qrs->fqs", xp, first)
        got = torch.einsum("fqr,rqp->fpr", y1, second).reshape(5, n)
        ref = fly.factorised(x)
        assert torch.allclose(got, ref, atol=1e-5 * ref.abs().max().item(), rtol=0), n


def test_butterfly_cost_is_n_log_n():
    assert Butterfly(256).multiply_adds() == 16 * 128 * 8
    assert Butterfly(512).multiply_adds() < 512 * 512


def test_conv_frontend_equals_stft_at_init():
    fe = ConvFrontEnd(256, 64)
    x = torch.randn(2, 4000)
    z = fe.analysis(x)
    ref = stft_reference(torch.nn.functional.pad(x, (fe.pad, 0)), 256, 64, 32)
    assert torch.allclose(z[..., : ref.shape[-1]], ref, atol=1e-4)


def test_conv_frontend_perfect_reconstruction():
    fe = ConvFrontEnd(256, 64)
    x = torch.randn(3, 5001)
    assert torch.allclose(fe.synthesis(fe.analysis(x), x.shape[-1]), x, atol=1e-4)


def test_fixed_twin_has_no_trainable_frontend():
    fe = ConvFrontEnd(128, 32, trainable=False)
    assert not any(p.requires_grad for p in fe.parameters())
