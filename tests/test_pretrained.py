"""Smoke tests of the shipped weights in models/: they load (sha256 checked) and do their job
on small synthetic signals. A model listed in models/manifest.json must pass; models not
shipped yet are skipped with the registry's reason."""
import numpy as np
import pytest
import torch

from audioe2e.registry import ModelNotAvailable, load_model, manifest
from audioe2e.train.losses import pit_si_sdr, si_sdr

RATE = 16000


def voiced(f0: float, seconds: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Speech-like tone: harmonics of a gliding f0 with a syllabic amplitude envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = sum(np.sin(k * phase) / k * (1 if k < 20 else 0) for k in range(1, 25))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    return torch.from_numpy((0.05 * x * env).astype(np.float32))


def get(name):
    if name not in manifest():
        pytest.skip(f"{name} not shipped yet")
    try:
        return load_model(name)
    except ModelNotAvailable as e:  # listed but missing → a real failure
        pytest.fail(str(e))


@pytest.mark.parametrize("name", ["enhancer-tiny", "enhancer"])
def test_enhancer_improves_si_sdr_on_noisy_tone_speech(name):
    model = get(name)
    torch.manual_seed(0)
    clean = voiced(140.0)
    noise = torch.randn_like(clean)
    noisy = clean + noise * clean.norm() / noise.norm()  # 0 dB white noise
    with torch.no_grad():
        out = model(noisy[None])[0]
    assert out.shape == clean.shape
    assert si_sdr(out, clean) > si_sdr(noisy, clean) + 3.0


def test_separator_improves_si_sdr_on_synthetic_mix():
    model = get("separator")
    a, b = voiced(110.0, seed=1), voiced(260.0, seed=2)
    mix = a + b
    with torch.no_grad():
        est = model(mix[None])
    assert est.shape == (1, 2, mix.shape[0])
    ref = torch.stack([a, b])[None]
    base = pit_si_sdr(torch.stack([mix, mix])[None], ref)[0]
    assert pit_si_sdr(est, ref)[0] > base + 3.0


def test_codec_round_trip_keeps_length_and_resembles_input():
    codec = get("codec")
    x = voiced(150.0, seconds=2.03)
    n_q = codec.bitrate_to_nq(3.0)
    enc, dec = codec.make_encoder(n_q), codec.make_decoder(n_q)
    codes = torch.cat([enc.feed(x[None]), enc.flush()], -1)
    y = torch.cat([dec.feed(codes), dec.flush()], -1)[0, : x.shape[0]]
    assert codes.shape[0] == n_q and y.shape == x.shape
    spec = lambda s: torch.stft(s, 512, 128, window=torch.hann_window(512), return_complex=True).abs()  # noqa
    corr = torch.nn.functional.cosine_similarity(spec(x).flatten(), spec(y).flatten(), dim=0)
    assert corr > 0.5


def test_codec_conceal_goes_quiet_in_a_lost_packet(tmp_path):
    """`decode --conceal` with the shipped codec: a CRC-damaged 1 s packet is skipped, its
    span is quiet after the 60 ms hold (not the last frame buzzing on), and the audio before
    it is the undamaged decode's."""
    from audioe2e.codecapi import run_decode, run_encode
    codec = get("codec")
    import soundfile as sf
    t = np.arange(4 * RATE) / RATE  # a steady voiced tone: loud when the packet is lost
    x = (0.05 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20))).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, RATE)
    assert run_encode([str(tmp_path / "x.wav")], str(tmp_path / "x.ae2"), codec, packet_seconds=1.0)[0].status == "ok"
    data = bytearray((tmp_path / "x.ae2").read_bytes())
    from audioe2e.bitstream import DATA, SYNC
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == SYNC + DATA]
    assert len(starts) >= 4  # 50 frames each (the flush may add a short last one)
    data[starts[1] + 12] ^= 0xFF  # a payload byte of the packet of 1.0–2.0 s
    (tmp_path / "bad.ae2").write_bytes(bytes(data))
    r = run_decode([str(tmp_path / "bad.ae2")], str(tmp_path / "bad.wav"), codec, conceal=True)[0]
    assert r.status == "ok" and r.extra["concealed"] == 1
    run_decode([str(tmp_path / "x.ae2")], str(tmp_path / "good.wav"), codec)
    y, g = sf.read(tmp_path / "bad.wav")[0], sf.read(tmp_path / "good.wav")[0]
    assert y.shape == g.shape == x.shape and np.array_equal(y[: int(0.9 * RATE)], g[: int(0.9 * RATE)])
    rms = lambda a: np.sqrt(np.mean(a ** 2))  # noqa: E731
    assert rms(y[int(1.15 * RATE): int(1.95 * RATE)]) < 0.01 * rms(g[int(1.15 * RATE): int(1.95 * RATE)])


def test_codec_vbr_spends_its_bits_on_the_voice(tmp_path):
    """`encode` (variable bitrate, the default) with the shipped codec: the silent second of
    a voiced-silent-voiced file gets few stages, the voiced seconds the rest; the stream keeps
    to --bitrate, framing included, and spends it; the decode keeps the length."""
    import io

    import soundfile as sf

    from audioe2e.bitstream import ABSENT, Ae2Reader
    from audioe2e.codecapi import run_decode, run_encode
    from audioe2e.ratecontrol import END_BYTES, SILENT_STAGES
    codec = get("codec")
    x = torch.cat([voiced(140.0, 2.0), torch.zeros(2 * RATE), voiced(180.0, 2.0, seed=3)]).numpy()
    sf.write(tmp_path / "x.wav", x, RATE)
    r = run_encode([str(tmp_path / "x.wav")], str(tmp_path / "x.ae2"), codec, bitrate=3.0)[0]
    assert r.status == "ok" and r.extra["variable_stages"]
    data = (tmp_path / "x.ae2").read_bytes()
    reader = Ae2Reader(io.BytesIO(data), lambda h: codec.priors(h["n_q"]))
    n = ((np.concatenate(list(reader), axis=1)) != ABSENT).sum(0)
    fps = RATE // codec.hop
    assert (n[int(2.2 * fps):int(3.8 * fps)] <= SILENT_STAGES).all()
    for part in (n[:2 * fps], n[4 * fps:]):  # the tone's syllables get more than fixed 3 kbit/s's 6
        loud = part[part > SILENT_STAGES]
        assert loud.size > 0.4 * part.size and loud.min() > 6
    r2 = Ae2Reader(io.BytesIO(data))
    spent = 0
    for pkt, _ in r2.iter_packets():  # DATA packets; END (END_BYTES) comes last
        r2.n_frames += pkt.n_frames
        spent += pkt.size
        assert (spent + END_BYTES) * 8 <= 3.0 * 1000 * r2.n_frames / fps  # never ahead of the rate
    stream = r2.bytes_read - r2.header_bytes
    assert stream == spent + END_BYTES and 0.97 * 3000 * 6.0 < stream * 8 <= 3000 * 6.0  # the pause's bits went to the voice
    d = run_decode([str(tmp_path / "x.ae2")], str(tmp_path / "y.wav"), codec)[0]
    assert d.status == "ok" and sf.info(str(tmp_path / "y.wav")).frames == x.size


def test_tiny_enhance_keeps_its_default_noise_floor_and_says_so(tmp_path):
    """`enhance --tiny` without --atten-lim mixes the input back 30 dB down (chosen on a
    validation draw; stored in its manifest entry); `--atten-lim inf` is the network's own
    output; the bench scores the same two signals in process; `--json` names the floor."""
    import json
    import subprocess
    import sys

    import soundfile as sf

    from audioe2e.bench import ours
    from audioe2e.registry import default_atten_lim_db

    model = get("enhancer-tiny")
    assert default_atten_lim_db("enhancer-tiny") == 30.0 and default_atten_lim_db("enhancer") is None
    assert model.default_atten_lim_db == 30.0 and get("enhancer").default_atten_lim_db is None
    torch.manual_seed(0)
    clean = voiced(150.0, seconds=2.0)
    noisy = (clean + 0.02 * torch.randn_like(clean)).numpy()
    sf.write(tmp_path / "in.wav", noisy, RATE, subtype="FLOAT")

    def cli(name, *opts):
        p = subprocess.run([sys.executable, "-m", "audioe2e", "enhance", "--tiny", str(tmp_path / "in.wav"),
                            "-o", str(tmp_path / name), "--subtype", "FLOAT", "--json", "--quiet", *opts],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return sf.read(tmp_path / name, dtype="float32")[0], json.loads(p.stdout)["files"][0]

    default, rep = cli("default.wav")
    floor30, _ = cli("floor30.wav", "--atten-lim", "30")
    raw, rep_raw = cli("raw.wav", "--atten-lim", "inf")
    assert rep["atten_lim_db"] == 30.0 and rep_raw["atten_lim_db"] is None  # null: no floor
    assert np.array_equal(default, floor30)
    assert np.abs(default - raw).max() > 1e-4  # the floor is there
    np.testing.assert_allclose(raw, ours.enhance_raw(model, noisy), atol=1e-4)
    np.testing.assert_allclose(default, ours.enhance(model, noisy), atol=1e-4)
    g = 10 ** (-30 / 20)
    np.testing.assert_allclose(default, raw * (1 - g) + noisy * g, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (not in CI; run on a lent GPU machine)")
def test_gpu_streams_match_the_cpu():
    """`--device cuda`: the codec's decoder (whose code lookup once stayed on the CPU and
    failed, eighteenth session) and the separator give the CPU's output within float rounding.
    (The network alone: the postfilter after it runs on the CPU either way, and its choice of
    period may flip on a rounding difference.)"""
    codec = get("codec")
    x = voiced(150.0, seconds=2.03)
    n_q = codec.bitrate_to_nq(3.0)
    enc = codec.make_encoder(n_q)
    codes = torch.cat([enc.feed(x[None]), enc.flush()], -1)
    outs = []
    for device in ("cpu", "cuda"):
        codec.to(device)
        dec = codec.make_decoder(n_q, device, postfilter=False)
        outs.append(torch.cat([dec.feed(codes), dec.flush()], -1))
    codec.to("cpu")
    assert torch.allclose(outs[0], outs[1], atol=1e-3)
    sep = get("separator")
    mix = (voiced(110.0, seed=1) + voiced(260.0, seed=2))[None]
    with torch.no_grad():
        cpu = sep(mix)
        gpu = sep.to("cuda")(mix.to("cuda")).cpu()
    sep.to("cpu")
    assert torch.allclose(cpu, gpu, atol=1e-3)


def test_codec_decode_postfilters_unless_told_not_to(tmp_path):
    """`decode` ends with the pitch postfilter (report: postfilter true); `--no-postfilter`
    gives the network's own output; both keep the length, and the first is the second with
    the postfilter applied (16 kHz float output, so no resampling or rounding between)."""
    import soundfile as sf

    from audioe2e.codecapi import run_decode, run_encode
    from audioe2e.postfilter import postfilter
    codec = get("codec")
    x = voiced(150.0, seconds=2.0).numpy()
    sf.write(tmp_path / "x.wav", x, RATE, subtype="FLOAT")
    assert run_encode([str(tmp_path / "x.wav")], str(tmp_path / "x.ae2"), codec)[0].status == "ok"
    on = run_decode([str(tmp_path / "x.ae2")], str(tmp_path / "on.wav"), codec)[0]
    off = run_decode([str(tmp_path / "x.ae2")], str(tmp_path / "off.wav"), codec, postfilter=False)[0]
    assert on.extra["postfilter"] is True and off.extra["postfilter"] is False
    y, z = sf.read(tmp_path / "on.wav")[0], sf.read(tmp_path / "off.wav")[0]
    assert y.shape == z.shape == x.shape
    assert np.abs(y - z).max() > 1e-3
    assert np.allclose(y, postfilter(z.astype(np.float32), RATE), atol=1e-5)
