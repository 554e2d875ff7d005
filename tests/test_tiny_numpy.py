"""The torch-free enhancer engine (nets/tiny_numpy.py) computes the TinyEnhancer function:
same step outputs and states as the torch reference on trained-looking (perturbed) weights,
same streamed output for any blocking with --atten-lim/--mix, the dense front-end of the
default enhancer too, and the CLI uses it without importing torch while a corrupt weights file still gives one error line."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from audioe2e.checkpoint import save_weights
from audioe2e.nets import tiny_numpy
from audioe2e.nets.tiny import TinyConfig, TinyEnhancer

pytestmark = pytest.mark.skipif(not tiny_numpy.available(), reason="compiled GRU loop not built")


def perturbed_tiny(seed: int = 0, **cfg) -> TinyEnhancer:
    """A tiny model whose butterflies and windows are moved off their FFT/Hann start, as
    training moves them, so that a wrong twiddle index or window fold shows."""
    torch.manual_seed(seed)
    m = TinyEnhancer(TinyConfig(**cfg)).eval()
    with torch.no_grad():
        for p in (m.analysis.fly.twiddles, m.synthesis.fly.twiddles):
            p.mul_(1 + 0.1 * torch.randn_like(p)).add_(0.02 * torch.randn_like(p))
        m.win_a.mul_(1 + 0.2 * torch.rand_like(m.win_a))
        m.win_s.mul_(1 + 0.2 * torch.rand_like(m.win_s))
        m.out.bias.add_(1.0)  # masks away from 0.5
    m.use_fast = False  # compare with the reference path, not the torch fast path
    return m


def as_numpy(m: TinyEnhancer, tmp_path) -> tiny_numpy.NumpyTinyEnhancer:
    path = tmp_path / "tiny.safetensors"
    sha = save_weights(path, m.state_dict(), m.config_dict())
    return tiny_numpy.load(path, sha)


@pytest.mark.parametrize("cfg", [{}, {"n_fft": 128, "hop": 64, "hidden": 32, "layers": 1}])
def test_numpy_step_equals_torch_reference(tmp_path, cfg):
    m = perturbed_tiny(**cfg)
    nm = as_numpy(m, tmp_path)
    x = (0.1 * np.random.default_rng(1).standard_normal((3, m.hop * 37))).astype(np.float32)
    state_t, state_n = None, None
    for part in np.split(x, [m.hop * 5, m.hop * 6], axis=-1):  # state carried over calls
        with torch.no_grad():
            y_t, state_t = m.step(torch.from_numpy(part), state_t)
        y_n, state_n = nm.step(part, state_n)
        assert y_n.shape == tuple(y_t.shape)
        np.testing.assert_allclose(y_n, y_t.numpy(), atol=2e-5)
    for a, b in zip(state_n, state_t):
        np.testing.assert_allclose(a, b.numpy(), atol=2e-5)


@pytest.mark.parametrize("kw", [{}, {"atten_lim_db": 6.0}, {"wet": 0.3}])
def test_numpy_streamer_equals_torch_streamer_for_any_blocking(tmp_path, kw):
    m = perturbed_tiny(seed=2)
    nm = as_numpy(m, tmp_path)
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal((2, 5003))).astype(np.float32)
    whole = m.make_streamer("cpu", **kw)
    ref = torch.cat([whole.feed(torch.from_numpy(x)), whole.flush()], -1).numpy()
    s = nm.make_streamer("cpu", **kw)
    cuts = np.sort(rng.choice(np.arange(1, x.shape[1]), 9, replace=False))
    outs = [s.feed(b) for b in np.split(x, cuts, axis=-1)] + [s.flush()]
    y = np.concatenate(outs, -1)
    assert y.shape == x.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=2e-5)


def run_cli(args, env_extra, cwd):
    """The CLI in a fresh interpreter; also reports whether torch got imported."""
    code = ("import sys\nfrom audioe2e.cli import main\nsys.argv = ['audioe2e'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr)\n"
            "sys.exit(code)\n")
    import os
    env = {k: v for k, v in os.environ.items() if k != "AUDIOE2E_FAKE_MODEL"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("flags", [["--tiny"], []])
def test_cli_enhance_runs_without_torch_and_matches_the_torch_engine(tmp_path, wav, flags):
    from audioe2e.registry import manifest
    if ("enhancer-tiny" if flags else "enhancer") not in manifest():
        pytest.skip("model not shipped")
    src = wav("a.wav", rate=22050, channels=2, seconds=1.3)
    p = run_cli(["enhance", *flags, src, "-o", tmp_path / "np.wav", "--json", "--threads", "1"], {}, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "NO_TORCH" in p.stderr
    assert json.loads(p.stdout)["files"][0]["engine"] == "numpy"
    p = run_cli(["enhance", *flags, src, "-o", tmp_path / "pt.wav"], {"AUDIOE2E_ENGINE": "torch"}, tmp_path)
    assert p.returncode == 0 and "TORCH_IMPORTED" in p.stderr
    import soundfile as sf
    a, ra = sf.read(str(tmp_path / "np.wav"), dtype="float32")
    b, rb = sf.read(str(tmp_path / "pt.wav"), dtype="float32")
    assert ra == rb == 22050 and a.shape == b.shape
    assert np.abs(a - b).max() <= 2 / 32768  # same PCM_16 samples to a rounding step


def test_cli_tiny_with_altered_weights_fails_in_one_line(tmp_path, wav):
    import shutil

    from audioe2e.registry import manifest, models_dir
    if "enhancer-tiny" not in manifest():
        pytest.skip("enhancer-tiny not shipped")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(models_dir() / "manifest.json", models)
    data = bytearray((models_dir() / "enhancer-tiny.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (models / "enhancer-tiny.safetensors").write_bytes(bytes(data))
    p = run_cli(["enhance", "--tiny", wav("a.wav"), "-o", tmp_path / "o.wav"],
                {"AUDIOE2E_MODELS": str(models)}, tmp_path)
    lines = [l for l in p.stderr.splitlines() if l not in ("NO_TORCH", "TORCH_IMPORTED")]
    assert p.returncode == 3 and len(lines) == 1 and "corrupt or altered" in lines[0]
    assert not (tmp_path / "o.wav").exists()


def test_numpy_engine_runs_the_dense_front_end_of_the_default_enhancer(tmp_path):
    """The default enhancer is the same class with the dense learned transform pair."""
    torch.manual_seed(4)
    m = TinyEnhancer(TinyConfig(arch="gru_enhancer", n_fft=128, hop=64, hidden=48, frontend="dense")).eval()
    m.use_fast = False  # the torch reference, not the engine under test
    with torch.no_grad():
        m.analysis.weight.add_(0.01 * torch.randn_like(m.analysis.weight))
        m.synthesis.weight.add_(0.01 * torch.randn_like(m.synthesis.weight))
        m.win_a.mul_(1 + 0.2 * torch.rand_like(m.win_a))
    nm = as_numpy(m, tmp_path)
    x = (0.1 * np.random.default_rng(5).standard_normal((2, 64 * 29))).astype(np.float32)
    with torch.no_grad():
        y_t, _ = m.step(torch.from_numpy(x))
    y_n, _ = nm.step(x)
    np.testing.assert_allclose(y_n, y_t.numpy(), atol=2e-5)
    with pytest.raises(ValueError, match="does not run"):
        tiny_numpy.NumpyTinyEnhancer({}, {**m.config_dict(), "frontend": "fft"})


def assert_streams_like_whole_file_on_both_engines(m: TinyEnhancer, x: np.ndarray, tmp_path) -> None:
    """The torch streamer (uneven blocks, a 1-sample one included) and the numpy engine's
    streamer both give the torch model's whole-signal output."""
    with torch.no_grad():
        whole = m(torch.from_numpy(x)).numpy()
    s = m.make_streamer("cpu")
    parts = [s.feed(torch.from_numpy(b)) for b in np.split(x, [5, 700, 701, 2000], -1)] + [s.flush()]
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole, atol=1e-5)
    ns = as_numpy(m, tmp_path).make_streamer("cpu")
    y = np.concatenate([ns.feed(b) for b in np.split(x, [333, 1500], -1)] + [ns.flush()], -1)
    np.testing.assert_allclose(y, whole, atol=2e-5)


def test_lookahead_model_streams_like_whole_file_and_numpy_engine_matches(tmp_path):
    """lookahead = 2 frames: chunked output equals the whole-signal output, the delay grows by
    2 hops, and the numpy engine computes the same function."""
    torch.manual_seed(6)
    cfg = dict(arch="gru_enhancer", n_fft=128, hop=64, hidden=32, frontend="dense", lookahead=2)
    m = TinyEnhancer(TinyConfig(**cfg)).eval()
    m.use_fast = False  # the torch reference, not the engine under test
    assert m.delay == 64 + 2 * 64 and m.latency == 128 + 2 * 64
    x = (0.1 * np.random.default_rng(7).standard_normal((1, 3001))).astype(np.float32)
    assert_streams_like_whole_file_on_both_engines(m, x, tmp_path)


def test_warm_start_into_lookahead_starts_as_the_old_model(tmp_path):
    from audioe2e.train.loop import warm_start

    torch.manual_seed(8)
    base = TinyEnhancer(TinyConfig(arch="gru_enhancer", n_fft=128, hop=64, hidden=32, frontend="dense")).eval()
    save_weights(tmp_path / "base.safetensors", base.state_dict(), base.config_dict())
    la = TinyEnhancer(TinyConfig(**{**base.config_dict(), "lookahead": 1})).eval()
    base.use_fast = la.use_fast = False  # the models as trained
    copied = warm_start(la, tmp_path / "base.safetensors")
    assert "inp.weight" in copied and la.inp.weight.shape[1] == 2 * base.inp.weight.shape[1]
    x = 0.1 * torch.randn(2, 2000)
    # forward() aligns each model's output to its input; the lookahead model's GRU also takes
    # one step on the leading silence (its first output frame), which the old model takes
    # when given one hop of silence in front
    padded = torch.nn.functional.pad(x, (64, 0))
    with torch.no_grad():
        np.testing.assert_allclose(la(x).numpy(), base(padded)[:, 64:].numpy(), atol=1e-5)


def test_numpy_engine_saturates_masks_without_warnings(tmp_path):
    """Logits far beyond float32 exp's range (±300) give masks of exactly 0 and 1, silently:
    a warning on stderr would break the CLI's one-line error contract."""
    import warnings

    m = perturbed_tiny(seed=9)
    with torch.no_grad():
        m.out.bias.copy_(torch.where(torch.arange(m.out.bias.numel()) % 2 == 0, 300.0, -300.0))
    nm = as_numpy(m, tmp_path)
    x = (0.1 * np.random.default_rng(10).standard_normal((1, m.hop * 8))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _ = nm.step(x)
    with torch.no_grad():
        np.testing.assert_allclose(y, m.step(torch.from_numpy(x))[0].numpy(), atol=2e-5)


def deep_filter_model(seed: int, **extra) -> TinyEnhancer:
    """A small default-enhancer-like model with a deep filter whose taps are non-zero (the
    head starts at zero, which would hide a wrong tap index or sign)."""
    torch.manual_seed(seed)
    cfg = dict(arch="gru_enhancer", n_fft=128, hop=64, hidden=32, frontend="dense", df_bins=20,
               df_order=3, **extra)
    m = TinyEnhancer(TinyConfig(**cfg)).eval()
    with torch.no_grad():
        m.df_out.weight.normal_(0, 0.3)
        m.df_out.bias.normal_(0, 0.3)
    m.use_fast = False
    return m


@pytest.mark.parametrize("extra", [{}, {"lookahead": 1}])
def test_deep_filter_streams_like_whole_file_and_numpy_engine_matches(tmp_path, extra):
    m = deep_filter_model(10, **extra)
    assert m.delay == 64 + m.look * 64  # the filter reads past frames only: no added delay
    x = (0.1 * np.random.default_rng(11).standard_normal((2, 3001))).astype(np.float32)
    assert_streams_like_whole_file_on_both_engines(m, x, tmp_path)


def test_deep_filter_taps_read_the_current_and_past_frames():
    """With the mask shut and only tap i open (coefficient 1), the filtered bins output the
    input spectrum i frames late: tap 0 is the current frame, tap 1 the previous one."""
    m = deep_filter_model(12)
    df = m.df
    x = torch.zeros(1, 64 * 40)
    x[0, 64 * 20: 64 * 21] = torch.randn(64)  # one burst
    for tap in range(m.df_order):
        with torch.no_grad():
            m.out.weight.zero_(), m.out.bias.fill_(-1e4)  # mask 0
            m.df_out.weight.zero_(), m.df_out.bias.zero_()
            m.df_out.bias.view(m.df_order, df, 2)[tap, :, 0] = 1.0
            y, _ = m.step(x)
            spec_in = m.analysis(x.unfold(-1, m.n, m.hop) * m.win_a)
            spec_out = m.analysis(y.unfold(-1, m.n, m.hop) * m.win_a)  # y lags x by n − hop samples
        energy_in = spec_in[0, :, :df].abs().pow(2).sum(-1)
        energy_out = spec_out[0, :, :df].abs().pow(2).sum(-1)
        shift = m.n // m.hop - 1 + tap  # frames: the overlap-add delay plus the tap
        assert int(energy_out.argmax()) - int(energy_in.argmax()) == shift


def test_warm_start_into_deep_filter_starts_as_the_old_model(tmp_path):
    from audioe2e.train.loop import warm_start

    torch.manual_seed(13)
    base = TinyEnhancer(TinyConfig(arch="gru_enhancer", n_fft=128, hop=64, hidden=32, frontend="dense")).eval()
    save_weights(tmp_path / "base.safetensors", base.state_dict(), base.config_dict())
    df = TinyEnhancer(TinyConfig(**{**base.config_dict(), "df_bins": 20, "df_order": 3})).eval()
    base.use_fast = df.use_fast = False
    copied = warm_start(df, tmp_path / "base.safetensors")
    assert "inp.weight" in copied and "df_out.weight" not in copied
    x = 0.1 * torch.randn(2, 2000)
    with torch.no_grad():
        np.testing.assert_allclose(df(x).numpy(), base(x).numpy(), atol=1e-6)
