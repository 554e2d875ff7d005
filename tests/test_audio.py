"""Block-wise audio I/O: WAV through pipes, atomic writes, clipping, streaming resampling."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from conftest import read, tones, write_wav

from audioe2e.audio import AudioError, AudioWriter, open_reader, output_subtype
from audioe2e.resample import ExactLength, Resampler
from audioe2e.wavpipe import WavPipeReader, WavPipeWriter, decode_frames, encode_frames


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most `step` bytes per read (like a slow pipe)."""

    def __init__(self, data: bytes, step: int = 7):
        self.data, self.pos, self.step = data, 0, step

    def readable(self):
        return True

    def read1(self, n=-1):
        n = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    read = read1


def wav_bytes(x, rate, subtype, fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, x.T, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def set_sizes_unknown(data: bytes, value=0xFFFFFFFF) -> bytes:
    i = data.index(b"data")
    data = bytearray(data)
    data[4:8] = struct.pack("<I", value)
    data[i + 4:i + 8] = struct.pack("<I", value)
    return bytes(data)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("fmt,channels", [("WAV", 1), ("WAV", 2), ("WAVEX", 3)])
def test_pipe_reader_matches_soundfile(subtype, fmt, channels):
    x = tones(1001, 16000, channels)
    data = wav_bytes(x, 16000, subtype, fmt)
    ref, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    i = data.index(b"data")
    end = i + 8 + struct.unpack("<I", data[i + 4:i + 8])[0]  # a stream has no pad byte / trailer
    for blob, frames in ((data, 1001), (set_sizes_unknown(data[:end]), None),
                         (set_sizes_unknown(data[:end], 0), None)):
        r = WavPipeReader(Trickle(blob, 13), block=100)
        assert (r.info.rate, r.info.channels, r.info.subtype, r.info.frames) == \
            (16000, channels, subtype, frames)
        got = np.concatenate(list(r.blocks()), axis=1)
        np.testing.assert_array_equal(got, ref.T)


def test_pipe_reader_skips_chunks_and_stops_at_data_size():
    x = tones(200, 8000)
    data = wav_bytes(x, 8000, "PCM_16")
    i = data.index(b"data")
    junk = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # odd size: padded
    data = data[:i] + junk + data[i:] + b"id3 trailing chunk"
    got = np.concatenate(list(WavPipeReader(Trickle(data, 64)).blocks()), axis=1)
    assert got.shape == (1, 200)


@pytest.mark.parametrize("blob,msg", [
    (b"", "zero-length"),
    (b"OggS" + b"\x00" * 40, "not a WAV stream"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "corrupt"),
])
def test_pipe_reader_errors(blob, msg):
    with pytest.raises(AudioError, match=msg):
        WavPipeReader(Trickle(blob))


def test_pipe_reader_unsupported_encoding():
    data = bytearray(wav_bytes(tones(100, 8000), 8000, "PCM_16"))
    data[20:22] = struct.pack("<H", 0x55)  # MPEG layer 3 inside WAV
    with pytest.raises(AudioError, match="unsupported WAV encoding"):
        WavPipeReader(Trickle(bytes(data)))


def test_pipe_reader_zero_frames_yields_nothing():
    r = WavPipeReader(Trickle(wav_bytes(np.zeros((1, 0), np.float32), 8000, "PCM_16")))
    assert list(r.blocks()) == []


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_pipe_writer_roundtrip_exact(subtype, channels):
    """Stream header + frames; libsndfile reads it back bit-exactly (PCM on its grid)."""
    x = tones(999, 22050, channels)
    grid = wav_bytes(x, 22050, subtype)  # quantise through libsndfile first
    x, _ = sf.read(io.BytesIO(grid), dtype="float32", always_2d=True)
    out = io.BytesIO()
    w = WavPipeWriter(out, 22050, channels, subtype)
    for i in range(0, 999, 100):
        w.write(x.T[:, i:i + 100])
    data = out.getvalue()
    assert data[4:8] == b"\xff\xff\xff\xff" and data[data.index(b"data") + 4:][:4] == b"\xff" * 4
    y, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert rate == 22050 and sf.info(io.BytesIO(data)).subtype == subtype
    np.testing.assert_array_equal(y, x)
    r = WavPipeReader(Trickle(data, 1000))
    np.testing.assert_array_equal(np.concatenate(list(r.blocks()), axis=1), x.T)


def test_encode_frames_clamps_and_rounds():
    x = np.array([[1.5, -1.5, 0.5, -1.0]], np.float32)
    v = np.frombuffer(encode_frames(x, "PCM_16"), "<i2")
    assert v.tolist() == [32767, -32768, 16384, -32768]
    np.testing.assert_allclose(decode_frames(encode_frames(x, "PCM_24"), "PCM_24", 1),
                               np.clip(x, -1, 1 - 2 ** -23))


def test_reader_files_and_errors(tmp_path):
    p = write_wav(tmp_path / "a.flac", tones(3000, 16000, 2), 16000, "PCM_16")
    with open_reader(p, block=1000) as r:
        assert (r.info.rate, r.info.channels, r.info.frames, r.info.format) == (16000, 2, 3000, "FLAC")
        blocks = list(r.blocks())
    assert [b.shape for b in blocks] == [(2, 1000)] * 3 and blocks[0].dtype == np.float32
    with pytest.raises(AudioError, match="no such file"):
        open_reader(str(tmp_path / "missing.wav"))
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="not a readable audio file"):
        open_reader(str(tmp_path / "junk.wav"))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="zero-length"):
        open_reader(str(tmp_path / "empty.wav"))
    write_wav(tmp_path / "zero.wav", np.zeros((1, 0), np.float32), 16000)
    with pytest.raises(AudioError, match="zero-length"):
        open_reader(str(tmp_path / "zero.wav"))
    with pytest.raises(AudioError, match="directory"):
        open_reader(str(tmp_path))
    write_wav(tmp_path / "r100.wav", tones(400, 100, 1), 100)  # a wrong file, not speech
    with pytest.raises(AudioError, match="unsupported sample rate 100 Hz"):
        open_reader(str(tmp_path / "r100.wav"))
    write_wav(tmp_path / "r8k.wav", tones(400, 8000, 1), 8000)  # telephone speech is read
    with open_reader(str(tmp_path / "r8k.wav")) as r:
        assert r.info.rate == 8000


def test_output_subtype():
    assert output_subtype("PCM_24") == "PCM_24"
    assert output_subtype("FLOAT") == "FLOAT"
    assert output_subtype("VORBIS") == "PCM_16"
    assert output_subtype("PCM_16", "float") == "FLOAT"
    with pytest.raises(AudioError):
        output_subtype("PCM_16", "ULAW")


def test_writer_atomic_and_clamp(tmp_path):
    dest = tmp_path / "o.wav"
    w = AudioWriter(str(dest), 8000, 1, "PCM_16")
    w.write(np.array([[0.5, 1.5, -2.0, 0.1]], np.float32))
    assert not dest.exists() and len(list(tmp_path.glob("o.wav.*.tmp"))) == 1
    w.close()
    y, _ = read(dest)
    assert w.clipped == 2 and y.max() <= 1 and y.min() >= -1
    assert list(tmp_path.iterdir()) == [dest]
    with pytest.raises(RuntimeError):
        with AudioWriter(str(tmp_path / "p.wav"), 8000, 1) as w2:
            w2.write(np.zeros((1, 10), np.float32))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


def test_writer_rescale_and_float(tmp_path):
    x = np.array([[0.5, 2.0, -1.0, 0.25]], np.float32)
    with AudioWriter(str(tmp_path / "r.wav"), 8000, 1, "PCM_24", clip="rescale") as w:
        w.write(x[:, :2])
        w.write(x[:, 2:])
    y, _ = read(tmp_path / "r.wav")
    assert w.clipped == 1 and w.gain == 0.5 and sf.info(str(tmp_path / "r.wav")).subtype == "PCM_24"
    np.testing.assert_allclose(y, x / 2, atol=1e-6)
    with AudioWriter(str(tmp_path / "f.wav"), 8000, 1, "FLOAT") as w:
        w.write(x)
    assert w.clipped == 0 and read(tmp_path / "f.wav")[0].max() == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.wav", "r.wav"]


@pytest.mark.parametrize("rates", [(16000, 48000), (44100, 16000), (22050, 16000), (8000, 16000)])
def test_resampler_blocks_equal_whole_and_lengths(rates):
    a, b = rates
    x = tones(a, a, 2)
    whole = Resampler(a, b, 2)
    ref = np.concatenate([whole.process(x), whole.flush()], axis=1)
    assert ref.shape == (2, round(a * b / a))
    rs = Resampler(a, b, 2)
    parts = [rs.process(x[:, i:i + 333]) for i in range(0, a, 333)] + [rs.flush()]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), ref, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_round_trip_is_aligned(rate):
    """Up (or down) to 16 kHz and back: same signal, not shifted (soxr compensates delay)."""
    x = tones(rate, rate)
    up, down, keep = Resampler(rate, 16000, 1), Resampler(16000, rate, 1), ExactLength(1)
    out, n_in = [], 0
    for i in range(0, rate, 1000):
        n_in += x[:, i:i + 1000].shape[1]
        out.append(keep.push(down.process(up.process(x[:, i:i + 1000])), limit=n_in))
        assert sum(o.shape[1] for o in out) <= n_in
    out.append(keep.push(down.process(up.flush()), limit=n_in))
    out.append(keep.push(down.flush(), limit=n_in))
    out.append(keep.finish(n_in))
    y = np.concatenate(out, axis=1)
    assert y.shape == x.shape
    mid = slice(rate // 10, -rate // 10)
    assert np.abs(y[:, mid] - x[:, mid]).max() < 1e-3
    lags = range(-3, 4)
    err = [np.abs(np.roll(y[0], k)[mid] - x[0, mid]).mean() for k in lags]
    assert lags[int(np.argmin(err))] == 0


def test_exact_length_holdback_and_pad():
    keep = ExactLength(1, holdback=5)
    assert keep.push(np.ones((1, 3), np.float32)).shape == (1, 0)
    assert keep.push(np.ones((1, 10), np.float32)).shape == (1, 8)
    assert keep.finish(9).shape == (1, 1)
    keep = ExactLength(2)
    keep.push(np.ones((2, 4), np.float32), limit=10)
    tail = keep.finish(7)
    assert tail.shape == (2, 3) and tail.sum() == 0
    assert Resampler(16000, 16000, 1).flush().shape == (1, 0)
