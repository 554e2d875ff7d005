"""Networks: streaming equals whole-signal output; shapes; speaker order across windows."""
import random

import numpy as np
import torch

from audioe2e.nets.codec import Codec, CodecConfig
from audioe2e.nets.masknet import MaskNet, MaskNetConfig
from audioe2e.nets.tiny import TinyConfig, TinyEnhancer
from audioe2e.streaming import OverlapAddStreamer, align_sources


def stream(streamer, x, sizes):
    outs, i = [], 0
    while i < x.shape[-1]:
        n = sizes[len(outs) % len(sizes)]
        outs.append(streamer.feed(x[..., i:i + n]))
        i += n
    outs.append(streamer.flush())
    return torch.cat([o for o in outs if o.shape[-1]], -1)


def test_tiny_enhancer_params_and_latency():
    m = TinyEnhancer(TinyConfig())
    assert sum(p.numel() for p in m.parameters()) <= 100_000
    assert 1000 * m.latency / m.sample_rate <= 20


def test_tiny_streaming_equals_whole_file():
    torch.manual_seed(0)
    for frontend in ("butterfly", "fft", "dense"):
        m = TinyEnhancer(TinyConfig(frontend=frontend)).eval()
        x = torch.randn(2, 9000) * 0.1
        with torch.no_grad():
            whole = m(x)
        for sizes in ([1, 7, 333], [128], [9000]):
            got = stream(m.make_streamer(), x, sizes)
            assert got.shape == x.shape
            assert torch.allclose(got, whole, atol=1e-5), (frontend, sizes)


def test_gru_enhancer_recipes_stream_like_whole_file_at_32ms_frames():
    """The default enhancer's recipes (n 512, hop 256, dense learned DFT) keep the tiny
    model's streaming contract: any blocking gives the whole-file output, length kept."""
    from audioe2e.registry import build_model
    from audioe2e.train.recipes import get_recipe

    torch.manual_seed(0)
    for name in ("enhancer-gru", "enhancer-gru-wide", "enhancer-gru-df"):
        m = build_model(dict(get_recipe(name).config)).eval()
        assert 1_000_000 <= sum(p.numel() for p in m.parameters()) <= 5_000_000
        assert 1000 * m.latency / m.sample_rate == 32
        x = torch.randn(1, 7001) * 0.1
        with torch.no_grad():
            whole = m(x)
        for sizes in ([1, 255, 777], [7001]):
            got = stream(m.make_streamer(), x, sizes)
            assert got.shape == x.shape
            assert torch.allclose(got, whole, atol=1e-5), (name, sizes)


def test_tiny_deep_filter_recipe_keeps_the_tiny_limits():
    """The deep-filter twin of the tiny enhancer stays within the issue's budget: ≤ 100 k
    parameters, ≤ 20 ms algorithmic latency (its taps read past frames only)."""
    from audioe2e.registry import build_model
    from audioe2e.train.recipes import get_recipe

    m = build_model(dict(get_recipe("enhancer-tiny-df").config))
    assert sum(p.numel() for p in m.parameters()) <= 100_000
    assert 1000 * m.latency / m.sample_rate <= 20 and m.latency == TinyEnhancer(TinyConfig()).latency


def _perturbed_tiny() -> TinyEnhancer:
    torch.manual_seed(3)
    m = TinyEnhancer(TinyConfig()).eval()
    with torch.no_grad():  # learned-looking weights: non-DFT butterflies, uneven windows
        for p in (m.analysis.fly.twiddles, m.synthesis.fly.twiddles):
            p.add_(0.2 * torch.randn_like(p))
        m.win_a.mul_(1 + 0.3 * torch.rand_like(m.win_a))
        m.win_s.mul_(1 + 0.3 * torch.rand_like(m.win_s))
    return m


def test_compiled_gru_layer_equals_torch_gru_and_checks_its_inputs():
    import numpy as np
    import pytest

    from audioe2e.nets import gru_kernel

    import shutil

    if not gru_kernel.available() and not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler: the optional GRU extension was not built (torch's GRU is used)")
    assert gru_kernel.available(), "audioe2e._gru was not built (pip install -e .)"
    torch.manual_seed(0)
    gru = torch.nn.GRU(8, 8, 1, batch_first=True)
    x, h0 = torch.randn(2, 13, 8) * 3, torch.randn(1, 2, 8)  # large inputs: saturated gates
    with torch.no_grad():
        ref, ref_h = gru(x, h0)
        gi = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0).numpy()
        whh_t = np.ascontiguousarray(gru.weight_hh_l0.numpy().T)
        h = h0[0].numpy().copy()
        bias = gru.bias_hh_l0.numpy().copy()
        out = gru_kernel.gru_layer(gi, h, whh_t, bias)
    assert np.allclose(out, ref.numpy(), atol=1e-6) and np.allclose(h, ref_h[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="float32"):
        gru_kernel.gru_layer(gi.astype(np.float64), h, whh_t, bias)
    with pytest.raises(ValueError, match="shapes"):
        gru_kernel.gru_layer(gi, h[:1], whh_t, bias)


def test_tiny_fast_inference_path_equals_reference_path():
    """CPU inference runs the two-factor butterfly and the compiled GRU: same output and
    state as the model as trained, block after block, for a batch of two channels."""
    m = _perturbed_tiny()
    x = torch.randn(2, 128 * 40) * 0.1
    x[1, 1000:2000] = 0  # exact silence: |X| = 0 in the features
    with torch.inference_mode():
        ref_state = fast_state = None
        for blk in x.split([128, 128 * 15, 128 * 24], -1):
            ref, ref_state = m.reference_step(blk, ref_state)
            fast, fast_state = m.step(blk, fast_state)
            assert m._fast is not None
            assert torch.allclose(fast, ref, atol=1e-5, rtol=0)
            for a, b in zip(fast_state, ref_state):
                assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_tiny_fast_path_follows_weight_changes_and_stays_out_of_training():
    m = _perturbed_tiny()
    x = torch.randn(1, 128 * 10) * 0.1
    with torch.inference_mode():
        before = m(x)
    with torch.no_grad():
        m.out.bias.add_(1.0)  # more of the input passes the mask
    with torch.inference_mode():
        after = m(x)
        ref = m.reference_step(torch.nn.functional.pad(x, (0, m.delay)))[0][:, m.delay:]
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(after, ref, atol=1e-5, rtol=0)
    m.train()
    y = m(x)
    assert y.requires_grad  # training runs the differentiable reference path


def test_masknet_shapes_and_chunked_equals_any_blocking():
    torch.manual_seed(0)
    cfg = MaskNetConfig(n_filters=64, kernel=32, bottleneck=16, hidden=32, layers=2, repeats=1,
                        chunk_seconds=0.25, overlap_seconds=0.05)
    m = MaskNet(cfg).eval()
    x = torch.randn(1, 11000) * 0.1
    assert m(x).shape == (1, 2, 11000)
    ref = stream(m.make_streamer(), x, [11000])
    assert ref.shape == (1, 2, 11000)
    for sizes in ([1, 500, 77], [4000], [3999, 1]):
        assert torch.allclose(stream(m.make_streamer(), x, sizes), ref, atol=1e-5)


def test_overlap_add_keeps_speaker_order_when_sources_swap_loudness():
    """A fake separator that outputs sources sorted by loudness per window (as a PIT-trained
    model may): without alignment speakers would swap when loudness crosses over."""
    t = torch.arange(48000) / 16000
    a = torch.sin(2 * torch.pi * 220 * t) * torch.linspace(1, 0.1, 48000)
    b = torch.sin(2 * torch.pi * 330 * t) * torch.linspace(0.1, 1, 48000)
    sources = torch.stack([a, b])

    pos = {"i": 0}
    chunk, overlap = 8000, 2000

    def model_fn(x):
        start = pos["i"] * (chunk - overlap)
        pos["i"] += 1
        seg = torch.nn.functional.pad(sources, (0, chunk))[:, start:start + chunk]
        order = seg.pow(2).sum(-1).argsort(descending=True)  # loudest first
        return seg[order].unsqueeze(0)

    s = OverlapAddStreamer(model_fn, chunk, overlap, align=align_sources)
    y = stream(s, (a + b).unsqueeze(0), [5000])[0]
    # each output channel must follow one source over the whole file
    corr = torch.einsum("st,rt->sr", y / y.norm(dim=-1, keepdim=True), sources / sources.norm(dim=-1, keepdim=True))
    assert corr.abs().max(dim=1).values.min() > 0.99


def test_codec_streaming_equals_whole_signal():
    torch.manual_seed(0)
    c = Codec(CodecConfig()).eval()
    x = torch.randn(1, 16000) * 0.1
    n_q = c.bitrate_to_nq(3.0)
    t = x.shape[-1] + c.delay
    padded = torch.nn.functional.pad(x, (0, c.delay + (-t) % c.hop))
    with torch.no_grad():
        codes = c.encode_frames(padded, n_q)[0]
        y = c.decode_frames(codes.unsqueeze(0))[0, c.delay:]  # aligned with x
    got_codes = stream(c.make_encoder(n_q), x, [1, 999, 4000])
    assert torch.equal(got_codes, codes)
    got = stream(c.make_decoder(n_q, postfilter=False), got_codes, [1, 3, 17])
    assert got.shape[-1] == codes.shape[-1] * c.hop - c.delay >= x.shape[-1]
    assert torch.allclose(got[0], y, atol=1e-5)
    # `decode`'s default adds the pitch postfilter, streamed along: the whole output filtered once
    from audioe2e.postfilter import postfilter
    got = stream(c.make_decoder(n_q), got_codes, [1, 3, 17])
    assert np.allclose(got[0].numpy(), postfilter(y.numpy(), c.sample_rate), atol=1e-5)
    with torch.no_grad():  # training forward: same function, aligned, once past the zero start
        k = c.context * c.hop
        assert torch.allclose(c(x, n_q)[0, k:], y[k:x.shape[-1]], atol=1e-4)


def test_codec_absent_stages_add_nothing():
    """A variable-bitrate frame's uncoded stages (bitstream.ABSENT) decode as that frame's
    first stages alone, as quantiser dropout trained it; the streaming decoder takes them."""
    from audioe2e.bitstream import ABSENT
    torch.manual_seed(0)
    c = Codec(CodecConfig(channels=8, n_filters=32, dim=16, codebook_size=16, n_q=4)).eval()
    codes = torch.randint(0, 16, (1, 4, 10))
    mixed = codes.clone()
    mixed[0, 2:, :5] = ABSENT
    with torch.no_grad():
        z = c.rvq.decode(mixed)
        assert torch.allclose(z[..., :5], c.rvq.decode(codes[:, :2])[..., :5])
        assert torch.allclose(z[..., 5:], c.rvq.decode(codes)[..., 5:])
        y = stream(c.make_decoder(4, postfilter=False), mixed[0], [3, 7])
        assert torch.allclose(y, c.decode_frames(mixed)[..., c.delay:], atol=1e-5)


def test_codec_priors_follow_their_counts():
    """The entropy priors are built once per content of `prior_counts` (batches ask for them per
    file), and counts refitted or loaded afterwards give the new priors, not stale ones."""
    from audioe2e.entropy import StaticPrior
    c = Codec(CodecConfig(channels=8, n_filters=32, dim=16, codebook_size=16, n_q=4))
    first = c.priors(4)
    assert c.priors(4)[0] is first[0]  # cached
    counts = torch.arange(4 * 16).view(4, 16)
    c.load_state_dict({**c.state_dict(), "prior_counts": counts})
    assert [p.freqs.tolist() for p in c.priors(3)] == \
        [StaticPrior.from_counts(counts[q].numpy()).freqs.tolist() for q in range(3)]
    with torch.no_grad():
        c.prior_counts[0].fill_(1)  # changed in place
    assert c.priors(4)[0].freqs.tolist() == StaticPrior.from_counts(np.ones(16, np.int64)).freqs.tolist()


def test_codec_transform_starts_as_perfect_reconstruction():
    """Before training, the learned synthesis inverts the learned analysis (DFT/pinv init),
    with exactly the `delay` the codec declares."""
    c = Codec(CodecConfig())
    x = torch.randn(1, 3200)
    with torch.no_grad():
        y = c.decoder[-1](c.encoder[0](x.unsqueeze(1))).squeeze(1)
    d = c.delay
    assert torch.allclose(y[:, d:], x[:, :x.shape[-1] - d], atol=1e-4)


def test_codec_bitrates():
    c = Codec(CodecConfig())
    assert [c.bitrate_to_nq(k) for k in (1.5, 3, 6)] == [3, 6, 12]
    assert c.latency / c.sample_rate * 1000 <= 40


def test_separator_outputs_are_brought_to_the_mixture_level():
    from audioe2e.nets.masknet import match_mixture_level
    x = torch.randn(2, 4000) * 0.1
    y = torch.stack([x * 0.3, x * 0.7], 1) * 50.0  # right balance, arbitrary (loud) level
    out = match_mixture_level(x, y)
    assert torch.allclose(out.sum(1), x, atol=1e-5)
    assert torch.allclose(out[:, 0] / out[:, 1], y[:, 0] / y[:, 1], atol=1e-4)


def test_overlap_add_synthesis_equals_causal_transposed_conv():
    from audioe2e.nets.causal import CausalConvTranspose, OverlapAddSynthesis
    torch.manual_seed(0)
    fast = OverlapAddSynthesis(12, 8)
    torch.nn.init.normal_(fast.weight)
    ref = CausalConvTranspose(12, 1, 8, stride=4, bias=False)
    ref.weight.data.copy_(fast.weight.data)
    z = torch.randn(2, 12, 9)
    assert torch.allclose(fast(z), ref(z), atol=1e-5)


def test_stft_discriminator_scores_every_resolution_and_passes_gradients_to_its_input():
    from audioe2e.nets.discriminator import MultiScaleSTFTDiscriminator
    d = MultiScaleSTFTDiscriminator(channels=4)
    x = (torch.randn(2, 8000) * 0.1).requires_grad_(True)
    out = d(x)
    assert len(out) == 3
    for (logits, feats), (n_fft, hop) in zip(out, ((512, 128), (1024, 256), (256, 64))):
        assert logits.shape[:2] == (2, 1) and logits.shape[2] == 8000 // hop + 1
        assert len(feats) == 5
    sum(lg.mean() for lg, _ in out).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_codec_reset_synthesis_keeps_the_decoders_function_on_a_full_rank_basis():
    """`Codec.reset_synthesis` (train.reparam): a synthesis trained away from its start (here
    randomised) is put back on the sine-windowed DFT basis, and the conv before it absorbs the
    change: the same output, and a basis of full rank."""
    torch.manual_seed(0)
    c = Codec(CodecConfig(channels=8, n_filters=48, dim=16, codebook_size=16, n_q=4, window=32)).eval()
    with torch.no_grad():
        c.decoder[-1].weight.copy_(torch.randn_like(c.decoder[-1].weight) * 0.1)
        x = torch.randn(1, 800) * 0.1
        before = c(x, n_q=4)
        c.reset_synthesis()
        after = c(x, n_q=4)
    assert torch.allclose(before, after, atol=1e-5 * before.abs().max().item())
    basis = c.decoder[-1].weight[:, 0].double()
    assert torch.linalg.matrix_rank(basis).item() == 32
