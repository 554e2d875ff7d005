"""File-level verbs: streaming drivers, rate/length preservation, naming, errors, codec."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import read, tones, write_wav

from audioe2e import api
from audioe2e.codecapi import run_decode, run_encode
from audioe2e.inputs import Input, UsageError, expand_inputs, plan_outputs
from audioe2e.testing import FakeEnhancer, FakeSeparator

BLOCKINGS = [1, 17, 1000, None]


def stream(streamer, x: torch.Tensor, block):
    block = block or x.shape[-1]
    parts = [streamer.feed(x[..., i:i + block]) for i in range(0, x.shape[-1], block)]
    parts.append(streamer.flush())
    return torch.cat([p for p in parts if p.numel()], dim=-1)


def test_stateful_streamer_chunk_independent():
    taps = (0.5, -0.3, 0.2, 0.1)
    model = FakeEnhancer(taps=taps, hop=160, delay=80)
    x = torch.from_numpy(tones(3000, 16000, 2))
    ref = np.stack([np.convolve(c, taps)[:3000] for c in x.numpy()])  # the delay is hidden
    for block in BLOCKINGS:
        y = stream(model.make_streamer("cpu"), x, block)
        assert y.shape == x.shape
        np.testing.assert_allclose(y.numpy(), ref, atol=1e-5)


def test_overlap_add_separator_chunk_independent_and_aligned():
    sep = FakeSeparator(chunk=1024, overlap=256)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((1, 5000)).astype(np.float32) * 0.1)
    outs = [stream(sep.make_streamer("cpu"), x, b) for b in BLOCKINGS]
    for y in outs:
        assert y.shape == (1, 2, 5000)
        np.testing.assert_allclose(y.numpy(), outs[-1].numpy(), atol=1e-5)
    y = outs[-1][0].numpy()
    np.testing.assert_allclose(y.sum(0), x[0].numpy(), atol=1e-5)  # sources add up to the mix
    low = np.convolve(x[0].numpy(), np.ones(9) / 9, mode="same")
    # without speaker alignment the windows with a positive sum would swap the sources
    k = int(np.argmax([np.corrcoef(y[s, 300:-300], low[300:-300])[0, 1] for s in range(2)]))
    assert np.corrcoef(y[k, 300:-300], low[300:-300])[0, 1] > 0.99


@pytest.fixture(scope="module")
def formats_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    for rate in (8000, 16000, 22050, 44100, 48000):
        for ch in (1, 2):
            for st in ("PCM_16", "PCM_24", "FLOAT"):
                write_wav(d / f"r{rate}_c{ch}_{st}.wav", tones(int(0.3 * rate) + 7, rate, ch), rate, st)
    return d


def test_rate_length_channels_subtype_preserved(formats_dir, tmp_path):
    reports = api.run_enhance([str(formats_dir)], str(tmp_path / "out"), FakeEnhancer())
    assert len(reports) == 30 and all(r.status == "ok" for r in reports)
    for r in reports:
        i, o = sf.info(r.input), sf.info(r.outputs[0])
        assert (o.samplerate, o.channels, o.frames, o.subtype) == \
            (i.samplerate, i.channels, i.frames, i.subtype), r.input
        x, _ = read(r.input)
        y, _ = read(r.outputs[0])
        mid = slice(i.samplerate // 20, -i.samplerate // 20)
        assert np.abs(x[:, mid] - y[:, mid]).max() < 2e-3, r.input
        if i.samplerate == 16000:  # no resampling: identity model is bit-exact
            np.testing.assert_array_equal(x, y)


def test_separate_to_dir_and_single_file(wav, tmp_path):
    src = wav("mix.wav", rate=8000, channels=2)
    r = api.run_separate([src], str(tmp_path / "sep"), FakeSeparator())[0]
    assert r.outputs == [str(tmp_path / "sep" / "mix_s1.wav"), str(tmp_path / "sep" / "mix_s2.wav")]
    x, _ = read(src)
    ys = [read(o)[0] for o in r.outputs]
    assert all(y.shape == x.shape for y in ys)
    mid = slice(400, -400)
    assert np.abs(ys[0][:, mid] + ys[1][:, mid] - x[:, mid]).max() < 2e-3
    r = api.run_separate([src], str(tmp_path / "both.wav"), FakeSeparator())[0]
    y, rate = read(tmp_path / "both.wav")
    assert rate == 8000 and y.shape == (2, x.shape[1])  # mono mix -> one channel per speaker
    assert np.abs(y[:, mid].sum(0) - x[:, mid].mean(0)).max() < 2e-3


def test_naming_contract(tmp_path, wav):
    a, b = wav("a.wav"), wav("sub/b.flac")
    ins = expand_inputs([str(tmp_path)])
    assert [(i.path, i.subdir, i.from_dir) for i in ins] == [(a, "", True), (b, "sub", True)]
    out = str(tmp_path / "o")
    assert plan_outputs(ins, out, "enhance")[1] == [[f"{out}/a.wav"], [f"{out}/sub/b.wav"]]
    assert plan_outputs(ins, out, "encode")[1][0] == [f"{out}/a.ae2"]
    assert plan_outputs(ins, out, "separate")[1][0] == [f"{out}/a_s1.wav", f"{out}/a_s2.wav"]
    assert plan_outputs(ins, out, "separate", "{stem}_spk{n}.wav")[1][0] == \
        [f"{out}/a_spk1.wav", f"{out}/a_spk2.wav"]
    one = [Input(a)]
    assert plan_outputs(one, "x/y.wav", "enhance") == ("file", [["x/y.wav"]])
    assert plan_outputs(one, "-", "separate") == ("stdout", [["-"]])
    assert plan_outputs(one, "newdir", "enhance") == ("dir", [["newdir/a.wav"]])
    assert plan_outputs(one, None, "enhance")[1] == [[str(tmp_path / "a_enhanced.wav")]]
    assert plan_outputs(one, None, "separate")[1] == [[str(tmp_path / "a_s1.wav"),
                                                       str(tmp_path / "a_s2.wav")]]
    assert plan_outputs(one, None, "decode")[1] == [[str(tmp_path / "a_decoded.wav")]]
    assert plan_outputs([Input("-")], None, "enhance") == ("stdout", [["-"]])
    with pytest.raises(UsageError, match="exactly one"):
        plan_outputs(ins, "-", "enhance")
    with pytest.raises(UsageError, match=r"\{n\}"):
        plan_outputs(ins, out, "separate", "{stem}.wav")
    with pytest.raises(UsageError, match="template"):
        plan_outputs(ins, out, "enhance", "{nope}.wav")
    with pytest.raises(UsageError):
        expand_inputs(["-", "-"])


def test_globs_and_bad_arguments(tmp_path, wav):
    wav("g1.wav"), wav("g2.wav")
    (tmp_path / "empty").mkdir()
    ins = expand_inputs([str(tmp_path / "g*.wav"), str(tmp_path / "empty"),
                         str(tmp_path / "nope.wav"), str(tmp_path / "z*.wav")])
    assert [i.error for i in ins] == [None, None, f"no audio files in {tmp_path / 'empty'}",
                                      "no such file", "no audio files match this pattern"]
    assert not any(i.from_dir for i in ins[:2])  # a glob is a list of files, not a folder
    assert plan_outputs(ins[:1], str(tmp_path / "x.wav"), "enhance")[0] == "file"


def test_errors_batch_goes_on(tmp_path, wav):
    good = wav("good.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    write_wav(tmp_path / "zero.wav", np.zeros((1, 0), np.float32), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    args = [good, str(tmp_path / "missing.wav"), str(tmp_path / "corrupt.wav"),
            str(tmp_path / "zero.wav"), str(tmp_path / "notes.txt")]
    reps = api.run_enhance(args, str(tmp_path / "out"), FakeEnhancer())
    assert [r.status for r in reps] == ["ok"] + ["failed"] * 4
    assert "no such file" in reps[1].error and "zero-length" in reps[3].error
    assert all("\n" not in r.error for r in reps[1:])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.wav"]


def test_non_finite_input_is_refused_mid_stream(tmp_path):
    """A NaN (or Inf) in a float WAV would turn all later output into NaN through the models'
    recurrent state: the file fails with where the sample is, and its partial output is gone."""
    x = tones(40000, 16000, 1)
    x[0, 30000] = np.nan  # in the second 16384-frame block: output has started by then
    nan = write_wav(tmp_path / "nan.wav", x, 16000, "FLOAT")
    x[0, 30000] = -np.inf
    inf = write_wav(tmp_path / "inf.wav", x, 16000, "FLOAT")
    reps = api.run_enhance([nan, inf], str(tmp_path / "out"), FakeEnhancer())
    assert [r.status for r in reps] == ["failed", "failed"]
    assert all("non-finite sample (NaN or Inf) at 1.875 s" in r.error for r in reps)
    rep = api.run_separate([nan], str(tmp_path / "sep"), FakeSeparator())[0]
    assert rep.status == "failed" and "non-finite" in rep.error
    assert not (tmp_path / "out").exists() and not (tmp_path / "sep").exists()


def test_existing_outputs_force_skip(tmp_path, wav):
    src = wav("a.wav")
    out = tmp_path / "o"
    assert api.run_enhance([src], str(out), FakeEnhancer())[0].status == "ok"
    before = (out / "a.wav").stat().st_mtime_ns
    r = api.run_enhance([src], str(out), FakeEnhancer())[0]
    assert r.status == "failed" and "exists" in r.error
    assert api.run_enhance([src], str(out), FakeEnhancer(), skip_existing=True)[0].status == "skipped"
    assert (out / "a.wav").stat().st_mtime_ns == before
    assert api.run_enhance([src], str(out), FakeEnhancer(), force=True)[0].status == "ok"
    assert sorted(p.name for p in out.iterdir()) == ["a.wav"]  # no temp files left


def test_unwritable_output_and_collisions(tmp_path, wav):
    src = wav("a.wav")
    (tmp_path / "afile").write_text("x")
    r = api.run_enhance([src], str(tmp_path / "afile" / "sub") + "/", FakeEnhancer())[0]
    assert r.status == "failed" and r.error
    wav("d2/a.wav")
    reps = api.run_enhance([src, str(tmp_path / "d2" / "a.wav")], str(tmp_path / "o"), FakeEnhancer())
    assert [r.status for r in reps] == ["ok", "failed"] and "also the output" in reps[1].error


def test_failure_midway_leaves_nothing(tmp_path, wav):
    class Boom(FakeEnhancer):
        def make_streamer(self, device="cpu", **kw):
            raise RuntimeError("model exploded")
    r = api.run_separate([wav("a.wav")], str(tmp_path / "o"), type("S", (FakeSeparator,), {
        "make_streamer": lambda self, device="cpu": (_ for _ in ()).throw(OSError("disk full"))})())[0]
    assert r.status == "failed" and "disk full" in r.error
    r = api.run_enhance([wav("a.wav")], str(tmp_path / "o" / "deep" / "er"), Boom())[0]
    assert r.status == "failed" and "model exploded" in r.error and r.traceback
    assert not (tmp_path / "o").exists()  # folders made for the failed output are taken back
    (tmp_path / "mine").mkdir()  # ... but not one the user already had
    r = api.run_enhance([wav("a.wav")], str(tmp_path / "mine" / "new"), Boom())[0]
    assert r.status == "failed" and list((tmp_path / "mine").iterdir()) == []


def test_clipping_reported(tmp_path, wav):
    src = wav("a.wav")
    loud = FakeEnhancer(gain=20.0)
    r = api.run_enhance([src], str(tmp_path / "c.wav"), loud)[0]
    assert r.clipped > 0 and read(tmp_path / "c.wav")[0].max() <= 1.0
    r = api.run_enhance([src], str(tmp_path / "r.wav"), loud, clip="rescale")[0]
    y, _ = read(tmp_path / "r.wav")
    assert r.clipped > 0 and 0 < r.extra["gain"] < 1 and np.abs(y).max() > 0.99
    r = api.run_enhance([src], str(tmp_path / "f.wav"), loud, subtype="FLOAT")[0]
    assert r.clipped == 0 and read(tmp_path / "f.wav")[0].max() > 1.0


def test_enhance_passes_streamer_options(tmp_path, wav):
    model = FakeEnhancer()
    api.run_enhance([wav("a.wav")], str(tmp_path / "o.wav"), model, atten_lim_db=12.0, wet=0.5)
    assert model.streamer_kwargs == {"atten_lim_db": 12.0, "wet": 0.5}
    with pytest.raises(UsageError):
        api.run_enhance([wav("a.wav")], str(tmp_path / "p.wav"), model, wet=2.0)


@pytest.mark.parametrize("rate,channels,subtype", [(16000, 1, "PCM_16"), (44100, 2, "PCM_24"),
                                                   (8000, 1, "FLOAT")])
@pytest.mark.parametrize("vbr", [True, False])
def test_codec_round_trip_restores_format(tmp_path, wav, codec, rate, channels, subtype, vbr):
    src = wav("s.wav", seconds=0.7, rate=rate, channels=channels, subtype=subtype)
    enc = run_encode([src], str(tmp_path / "s.ae2"), codec, bitrate=1.6, vbr=vbr)[0]
    assert enc.status == "ok" and enc.extra["bytes"] > 0
    assert enc.extra["n_q"] == (codec.n_q if vbr else 4) and (tmp_path / "s.ae2").read_bytes()[4] == 1 + vbr
    dec = run_decode([str(tmp_path / "s.ae2")], str(tmp_path / "d.wav"), codec)[0]
    assert dec.status == "ok", dec.error
    i, o = sf.info(src), sf.info(str(tmp_path / "d.wav"))
    assert (o.samplerate, o.channels, o.frames, o.subtype) == (rate, channels, i.frames, subtype)


def test_vbr_packets_keep_to_the_bitrate(tmp_path, wav, codec):
    """Variable bitrate: the stream (packets with their framing, END included) never runs
    ahead of --bitrate × the time coded so far, spends nearly all of it over the file, and a
    higher bitrate buys more stages per frame."""
    from audioe2e.bitstream import Ae2Reader
    from audioe2e.codecapi import file_info
    from audioe2e.ratecontrol import END_BYTES
    src = wav("s.wav", seconds=4.1)
    fps = codec.sample_rate / codec.hop
    stages = []
    for kbps in (1.5, 2.5):  # the fake codec: 8 bits a stage, 0.4 kbit/s
        r = run_encode([src], str(tmp_path / f"{kbps}.ae2"), codec, bitrate=kbps, packet_seconds=1.0)[0]
        assert r.status == "ok", r.error
        stages.append(r.extra["mean_stages"])
        spent, frames = 0, 0
        with open(tmp_path / f"{kbps}.ae2", "rb") as f:
            reader = Ae2Reader(f)
            for pkt, _ in reader.iter_packets():  # DATA packets; the END packet still to come
                reader.n_frames += pkt.n_frames
                spent, frames = spent + pkt.size, frames + pkt.n_frames
                assert spent + END_BYTES <= kbps * 1000 / 8 * frames / fps
            stream = reader.bytes_read - reader.header_bytes
        share = kbps * 1000 / 8 * 4.1
        assert stream == spent + END_BYTES and 0.95 * share < stream <= share
        assert r.extra["stream_kbps"] == pytest.approx(stream * 8 / 4.1 / 1000, abs=1e-4)
        assert file_info(str(tmp_path / f"{kbps}.ae2"))["stream_kbps"] == pytest.approx(stream * 8 / 4.1 / 1000)
    assert 1 <= stages[0] < stages[1] <= codec.n_q
    with pytest.raises(UsageError, match="packets this short need about"):  # framing alone is over the rate
        run_encode([src], str(tmp_path / "short.ae2"), codec, bitrate=1.5, packet_seconds=0.02)
    assert not (tmp_path / "short.ae2").exists()
    assert run_encode([src], str(tmp_path / "short.ae2"), codec, bitrate=1.5, packet_seconds=0.02,
                      vbr=False)[0].status == "ok"  # fixed stages promise no rate on the wire
    for bad in (float("inf"), float("nan")):  # one usage line, no file, either mode
        with pytest.raises(UsageError, match="must be a finite number of kbit/s"):
            run_encode([src], str(tmp_path / "bad.ae2"), codec, bitrate=bad)
    assert not (tmp_path / "bad.ae2").exists()


def test_codec_errors_and_conceal(tmp_path, wav, codec):
    run_encode([wav("s.wav", seconds=2.0)], str(tmp_path / "s.ae2"), codec)
    data = bytearray((tmp_path / "s.ae2").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.ae2").write_bytes(bytes(data))
    (tmp_path / "cut.ae2").write_bytes(bytes(data[: len(data) // 3]))
    (tmp_path / "x.ae2").write_bytes(b"hello")
    reps = run_decode([str(tmp_path / n) for n in ("bad.ae2", "cut.ae2", "x.ae2")],
                      str(tmp_path / "out"), codec)
    assert [r.status for r in reps] == ["failed"] * 3
    assert "not an .ae2" in reps[2].error and all(r.traceback is None for r in reps)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    r = run_decode([str(tmp_path / "bad.ae2")], str(tmp_path / "c.wav"), codec, conceal=True)[0]
    assert r.status == "ok" and r.extra["concealed"] >= 1
    assert sf.info(str(tmp_path / "c.wav")).frames == 32000


def test_packet_seconds_changes_the_packets_not_the_codes(tmp_path, wav, codec):
    """`--packet-seconds`: the same codes in fewer, larger packets (fewer bytes: each packet
    costs framing); a length outside 1..4096 frames is a usage error that writes nothing."""
    from audioe2e.bitstream import Ae2Reader
    src = wav("s.wav", seconds=2.3)
    streams = {}
    for secs in (0.1, 2.0):
        r = run_encode([src], str(tmp_path / f"{secs}.ae2"), codec, packet_seconds=secs, vbr=False)[0]
        assert r.status == "ok", r.error
        with open(tmp_path / f"{secs}.ae2", "rb") as f:
            reader = Ae2Reader(f, lambda h: codec.priors(h["n_q"]))
            streams[secs] = (reader.header["frames_per_packet"], np.concatenate(list(reader), 1), r.extra["bytes"])
    (fpp_a, codes_a, bytes_a), (fpp_b, codes_b, bytes_b) = streams[0.1], streams[2.0]
    assert (fpp_a, fpp_b) == (5, 100) and np.array_equal(codes_a, codes_b) and bytes_b < bytes_a
    for bad in (0.0, 0.001, 100.0, float("nan")):
        with pytest.raises(UsageError, match=f"--packet-seconds {bad:g}: must be 0.02 to 81.92 s"):
            run_encode([src], str(tmp_path / "bad.ae2"), codec, packet_seconds=bad)
    assert not (tmp_path / "bad.ae2").exists()


def test_file_output_independent_of_io_block_size(tmp_path, wav):
    src = wav("m.wav", seconds=0.6, rate=22050, channels=2, subtype="FLOAT")
    outs = []
    for block in (333, 4096, 65536):
        r = api.run_separate([src], str(tmp_path / f"o{block}"), FakeSeparator(), block=block)[0]
        outs.append(np.stack([read(o)[0] for o in r.outputs]))
    for y in outs[1:]:
        np.testing.assert_allclose(y, outs[0], atol=1e-5)


def test_conceal_holds_the_last_frame_briefly_then_goes_quiet(codec):
    """A lost frame repeats the last good one for `hold` frames of a loss, then the codes of
    silence take over (a lost 2 s packet must not buzz on one frame); state spans packets."""
    from audioe2e.codecapi import Concealer, silence_codes
    quiet = np.array([[0], [1]])
    fill = Concealer(quiet, hold=2)
    out = fill(np.array([[-1, 5, -1, -1, -1], [-1, 6, -1, -1, -1]]))
    assert out.tolist() == [[0, 5, 5, 5, 0], [1, 6, 6, 6, 1]]
    assert fill(np.array([[-1, 7], [-1, 8]])).tolist() == [[0, 7], [1, 8]]  # the loss goes on
    assert fill(np.array([[-1, -1, -1], [-1, -1, -1]])).tolist() == [[7, 7, 0], [8, 8, 1]]
    assert fill(np.array([[3], [4]])).tolist() == [[3], [4]]
    s = silence_codes(codec, 2)  # the fake codec's code for a frame of zeros: mid-scale
    assert s.shape == (2, 1) and (s == round(0.5 * (codec.codebook_size - 1))).all()


def test_real_untrained_nets_follow_the_contract(tmp_path, wav):
    """The shipped architectures (random weights) run through the same file loop."""
    tiny = pytest.importorskip("audioe2e.nets.tiny")
    codec_mod = pytest.importorskip("audioe2e.nets.codec")
    src = wav("a.wav", seconds=0.4, rate=22050, channels=2, subtype="PCM_24")
    m = tiny.TinyEnhancer.from_config({}).eval()
    r = api.run_enhance([src], str(tmp_path / "e.wav"), m)[0]
    assert r.status == "ok", r.error
    assert sf.info(str(tmp_path / "e.wav")).frames == sf.info(src).frames
    c = codec_mod.Codec.from_config({}).eval()
    c.model_name, c.weights_sha256 = "codec", "f" * 64
    assert run_encode([src], str(tmp_path / "a.ae2"), c)[0].status == "ok"
    r = run_decode([str(tmp_path / "a.ae2")], str(tmp_path / "d.wav"), c)[0]
    assert r.status == "ok", r.error
    i, o = sf.info(src), sf.info(str(tmp_path / "d.wav"))
    assert (o.samplerate, o.channels, o.frames, o.subtype) == (22050, 2, i.frames, "PCM_24")
