"""File-level `encode`/`decode`/`info` for the neural codec and the `.ae2` container.

Encode: read blocks, downmix to mono (the codec is mono; the original channel count, rate
and subtype go into the header), resample to the codec rate, feed the encoder, write code
packets as they come, and record the exact input length at the end. Decode: read packets,
feed the decoder, resample back to the original rate, upmix to the original channels (every
channel gets the decoded mono signal) and cut to the exact length stored in the file. With
`--conceal`, frames of damaged packets repeat the last good frame for 60 ms, then the codes
of silence (`Concealer`). Both stream, so `... | audioe2e encode - -o - | audioe2e decode - -o -
| ...` works on pipes.

Variable bitrate (the default): the encoder codes all `n_q` stages and `ratecontrol` keeps,
per 2 s packet, the stages that fit the packet's share of `--bitrate`, few for silence and
the rest spread over the speech; the file is `.ae2` version 2 (`bitstream.stages`).

Codec contract: `sample_rate`, `hop`, `codebook_size`, `n_q` (most stages), `bitrate_to_nq(kbps)`,
`priors(n_q) -> list[StaticPrior] | None`, `make_encoder(n_q, device)` (feed `[1, T]` ->
`[n_q, F]` int codes), `make_decoder(n_q, device, postfilter)` (feed `[n_q, F]` -> `[1, T']`,
aligned with the encoder input; negative codes add nothing), `model_name`, `weights_sha256`; optional
`speech_frames(codes [n_q, F], silence [n_q, 1]) -> bool [F]` (`silence`: `silence_codes`;
without it variable bitrate treats every frame as speech).
"""
from __future__ import annotations

import math
import sys
from contextlib import ExitStack
from itertools import chain
from typing import Optional, Sequence

import numpy as np

from .api import _prepare, run_batch, stamp
from .audio import first_and_rest, BLOCK, AtomicFile, AudioError, AudioWriter, open_reader, output_subtype
from .bitstream.format import FILL
from .inputs import CODE_EXTS, Input, UsageError
from .report import FileReport, Progress
from .resample import ExactLength, Resampler

DEFAULT_KBPS = 3.0
# Packets of 2 s: each costs ~14 bytes (11 of framing, ~3 of entropy-coder flush), so 0.5 s
# packets added ~115 bit/s more than 2 s ones, and `--bitrate 3` measured 3.13 kbit/s instead
# of 2.96 (121 s of validation speech). Like Ogg Opus's 1 s pages, a file/pipe trade: a
# reader of a live pipe waits for whole packets, and --conceal loses a packet's span at a time.
DEFAULT_PACKET_S = 2.0


def _np(c) -> np.ndarray:
    return c.detach().cpu().numpy() if hasattr(c, "detach") else np.asarray(c)


def _binary_out(dest: str, stack: ExitStack):
    """stdout, or an AtomicFile committed when the stack closes without error."""
    if dest == "-":
        return sys.stdout.buffer, None
    af = AtomicFile(dest)
    stack.push(lambda et, e, tb: af.abort() if et is not None else af.commit())
    return af.f, af


def nominal_kbps(codec, n_q: int) -> float:
    """Raw bitrate of n_q stages before entropy coding: n_q · ⌈log2 K⌉ bits per frame."""
    return n_q * math.ceil(math.log2(max(int(codec.codebook_size), 2))) * codec.sample_rate / codec.hop / 1000


def frames_per_packet(codec, seconds: float) -> int:
    """Code frames per `.ae2` packet for packets of about `seconds`."""
    from .bitstream import MAX_FRAMES_PER_PACKET
    frame_s = codec.hop / codec.sample_rate
    n = round(seconds / frame_s) if math.isfinite(seconds) else 0
    if not 1 <= n <= MAX_FRAMES_PER_PACKET:
        raise UsageError(f"--packet-seconds {seconds:g}: must be {frame_s:g} to "
                         f"{MAX_FRAMES_PER_PACKET * frame_s:g} s (1 to {MAX_FRAMES_PER_PACKET} code frames)")
    return n


def ae2_header(codec, n_q: int, orig_rate: int, channels: int, subtype: Optional[str] = None,
               vbr_kbps: Optional[float] = None) -> dict:
    """The `.ae2` header fields for this codec at n_q stages (DESIGN §3); with `vbr_kbps`, a
    variable-stage file of up to n_q stages per frame at that rate."""
    header = dict(model=str(codec.model_name), model_sha256=str(codec.weights_sha256),
                  model_rate=int(codec.sample_rate), orig_rate=int(orig_rate), channels=int(channels),
                  frame_size=int(codec.hop), n_q=int(n_q), codebook_size=int(codec.codebook_size),
                  bitrate_kbps=round(nominal_kbps(codec, n_q) if vbr_kbps is None else vbr_kbps, 4))
    if vbr_kbps is not None:
        header["variable_stages"] = True
    if subtype is not None:
        header["subtype"] = subtype
    return header


def code_writer(f, codec, n_q: int, header: dict, packet_frames: int, vbr_kbps: Optional[float],
                silence: Optional[np.ndarray] = None):
    """An `Ae2Writer`; with `vbr_kbps` it is fed all n_q stages of every frame and a
    `ratecontrol.StageAllocator` (its `.packet_codes`) keeps the stream within the rate,
    telling speech from silence by the codec's `speech_frames` against `silence` (the codec's
    `silence_codes`, computed here when not given)."""
    from .bitstream import Ae2Writer
    priors = codec.priors(n_q)
    allocator = None
    if vbr_kbps is not None:
        from .ratecontrol import StageAllocator
        speech = None
        if hasattr(codec, "speech_frames"):
            silence = silence_codes(codec, n_q) if silence is None else silence
            speech = lambda codes: codec.speech_frames(codes, silence)  # noqa: E731
        # frames coded beyond the input's duration: the delay's, flushed at the end, plus a partial one
        extra = getattr(codec, "delay", 0) / codec.hop + 1
        allocator = StageAllocator(priors, n_q, int(codec.codebook_size), vbr_kbps,
                                   codec.sample_rate / codec.hop, speech, extra_frames=extra)
    return Ae2Writer(f, header, priors, frames_per_packet=packet_frames, packet_codes=allocator)


def encode_stream(inp: Input, dest: str, codec, n_q: int, device: str, *, progress: bool = False,
                  packet_frames: int, vbr_kbps: Optional[float] = None,
                  silence: Optional[np.ndarray] = None, block: int = BLOCK, quality: str = "HQ") -> dict:
    """With `vbr_kbps`, n_q is the most stages a frame may get (`ratecontrol`)."""
    import torch

    with open_reader(inp.path, block) as reader, ExitStack() as stack:
        info = reader.info
        first, blocks = first_and_rest(reader)
        f, _ = _binary_out(dest, stack)
        header = ae2_header(codec, n_q, int(info.rate), int(info.channels), output_subtype(info.subtype),
                            vbr_kbps)
        writer = code_writer(f, codec, n_q, header, packet_frames, vbr_kbps, silence)
        enc = codec.make_encoder(n_q, device)
        up = Resampler(info.rate, codec.sample_rate, 1, quality)
        prog = stack.enter_context(Progress(inp.display, info.duration, progress))
        n_in = 0

        def put(codes):
            codes = _np(codes)
            if codes.size:  # "nothing yet" may come as any empty shape
                writer.write(codes.reshape(n_q, -1))

        def feed(x: np.ndarray):
            if x.shape[-1]:
                put(enc.feed(torch.from_numpy(np.ascontiguousarray(x))))

        for blk in chain([first], blocks):
            n_in += blk.shape[-1]
            feed(up.process(blk.mean(axis=0, keepdims=True) if blk.shape[0] > 1 else blk))
            prog.update(n_in / info.rate)
        feed(up.flush())
        put(enc.flush())
        writer.close(n_in)
    dur = n_in / info.rate
    size = writer.bytes_written
    report = {"duration_s": dur, "bytes": size, "n_q": n_q, "nominal_kbps": header["bitrate_kbps"],
              "bitrate_kbps": round(size * 8 / dur / 1000, 4) if dur else None,
              "stream_kbps": round((size - writer.header_bytes) * 8 / dur / 1000, 4) if dur else None}
    if vbr_kbps is not None:
        report["variable_stages"] = True
        stages = writer.packet_codes.mean_stages
        report["mean_stages"] = None if stages is None else round(stages, 3)
    return report


# Concealment holds the last good frame this long, then fades to the codes of silence (as
# speech codecs' loss concealment mutes after a few tens of ms, e.g. G.711 Appendix I's 60 ms),
# so a lost 2 s packet is a short hold and then quiet, not 2 s of one frame's buzz.
CONCEAL_HOLD_S = 0.06


def silence_codes(codec, n_q: int, device: str = "cpu") -> np.ndarray:
    """`[n_q, 1]`: the codes this codec gives digital silence (a frame after 1 s of zeros, past
    any start-up transient). Input on the CPU, as `encode_stream` feeds it on any device."""
    import torch
    with torch.inference_mode():
        enc = codec.make_encoder(n_q, device)
        codes = _np(enc.feed(torch.zeros(1, int(codec.sample_rate))))
    return codes.reshape(n_q, -1)[:, -1:].astype(np.int64)


class Concealer:
    """Concealment in the code domain (works with any codec): a lost frame (`bitstream.FILL`
    codes) repeats the last good frame for up to `hold` frames of a loss, later ones
    (and lost frames before any good one) get `silence`. Stateful across packets."""

    def __init__(self, silence: np.ndarray, hold: int):
        self.silence, self.hold = silence, hold
        self.last, self.run = silence, 0

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        lost = (codes == FILL).any(axis=0)  # (ABSENT, -2, is a stage a frame does not code)
        if not lost.any():
            self.run = 0
            if codes.shape[1]:
                self.last = codes[:, -1:]
            return codes
        codes = codes.copy()
        for j in range(codes.shape[1]):
            if lost[j]:
                self.run += 1
                codes[:, j] = (self.last if self.run <= self.hold else self.silence)[:, 0]
            else:
                self.run, self.last = 0, codes[:, j:j + 1]
        return codes


def decode_stream(inp: Input, dest: str, codec, device: str, *, conceal: bool = False,
                  subtype: Optional[str] = None, clip: str = "clamp", progress: bool = False,
                  quality: str = "HQ", postfilter: bool = True) -> dict:
    import torch

    from .bitstream import Ae2Reader, BitstreamError

    with ExitStack() as stack:
        f = sys.stdin.buffer if inp.path == "-" else stack.enter_context(open(inp.path, "rb"))
        reader = Ae2Reader(f, lambda h: codec.priors(h["n_q"]), conceal=conceal)
        h = reader.header
        if h["model_sha256"] != str(codec.weights_sha256) or h["model_rate"] != codec.sample_rate:
            raise BitstreamError(f"encoded with model {h['model']} ({h['model_sha256'][:12]}), "
                                 f"not the installed {codec.model_name} "
                                 f"({str(codec.weights_sha256)[:12]})")
        rate, C, hop = h["orig_rate"], h["channels"], h["frame_size"]
        st = output_subtype(h.get("subtype", "PCM_16"), subtype)
        writer = stack.enter_context(AudioWriter(dest, rate, C, st, clip))
        dec = codec.make_decoder(h["n_q"], device, postfilter=postfilter)
        down = Resampler(h["model_rate"], rate, 1, quality)
        # The true length arrives last: hold back enough for the last frame's padding.
        keep = ExactLength(1, holdback=math.ceil(2 * hop * rate / h["model_rate"]) + 64)
        prog = stack.enter_context(Progress(inp.display, None, progress))
        frames = 0

        def write(z: np.ndarray):
            if z.shape[-1]:
                writer.write(np.repeat(z, C, axis=0) if C > 1 else z)

        def out(y):
            y = _np(y).astype(np.float32).reshape(1, -1)
            write(keep.push(down.process(y)))

        if conceal:
            fill = Concealer(silence_codes(codec, h["n_q"], device),
                             hold=max(1, round(CONCEAL_HOLD_S * h["model_rate"] / hop)))
        for codes in reader:
            frames += codes.shape[-1]
            if conceal:
                codes = fill(codes)
            out(dec.feed(torch.from_numpy(np.ascontiguousarray(codes))))
            prog.update(frames * hop / h["model_rate"])
        out(dec.flush())
        write(keep.push(down.flush()))
        n = reader.n_samples if reader.n_samples is not None else keep.emitted + keep.buf.shape[-1]
        if keep.emitted > n:
            raise BitstreamError(f"decoded audio is longer than the {n} samples the file records")
        write(keep.finish(n))
    return {"duration_s": n / rate, "clipped": writer.clipped, "sample_rate": rate,
            "channels": C, "subtype": st, "concealed": reader.concealed,
            "truncated": reader.truncated, "postfilter": postfilter}


def run_encode(inputs: Sequence[str | Input], output: Optional[str] = None, codec=None, *,
               bitrate: float = DEFAULT_KBPS, vbr: bool = True, device: str = "cpu",
               threads: Optional[int] = None, progress: bool = False, block: int = BLOCK,
               packet_seconds: float = DEFAULT_PACKET_S, **batch) -> list[FileReport]:
    """Encode each audio input to `.ae2`. `vbr` (default): the stream (packets, framing
    included) spends at most `bitrate` kbit/s, stages per frame chosen by `ratecontrol`;
    otherwise a fixed number of stages, `bitrate` kbit/s before entropy coding and framing."""
    codec, device = _prepare(codec, "codec", device, threads)
    if not math.isfinite(bitrate):
        raise UsageError(f"--bitrate {bitrate}: must be a finite number of kbit/s")
    try:
        n_q = int(codec.bitrate_to_nq(bitrate))
    except ValueError as e:
        raise UsageError(f"--bitrate {bitrate}: {e}") from None
    fpp = frames_per_packet(codec, packet_seconds)
    vbr_kbps, silence = (float(bitrate) if vbr else None), None
    if vbr:  # the most stages, and the codes of silence once for the whole batch
        n_q = int(codec.n_q)
        from .ratecontrol import floor_kbps
        least = floor_kbps(codec.priors(n_q), n_q, int(codec.codebook_size), fpp, codec.sample_rate / codec.hop)
        if bitrate < least:
            raise UsageError(f"--bitrate {bitrate:g} with --packet-seconds {packet_seconds:g}: packets this short "
                             f"need about {least:.2f} kbit/s for their framing and one quantiser stage a "
                             "frame; use longer packets or a higher bitrate")
        if hasattr(codec, "speech_frames"):
            silence = silence_codes(codec, n_q, device)

    def process(inp, outs, mode):
        return encode_stream(inp, outs[0], codec, n_q, device, progress=progress, block=block,
                             packet_frames=fpp, vbr_kbps=vbr_kbps, silence=silence)
    return stamp(run_batch("encode", inputs, output, process, **batch), codec, device)


def run_decode(inputs: Sequence[str | Input], output: Optional[str] = None, codec=None, *,
               conceal: bool = False, device: str = "cpu", threads: Optional[int] = None,
               subtype: Optional[str] = None, clip: str = "clamp", progress: bool = False,
               postfilter: bool = True, **batch) -> list[FileReport]:
    """Decode each `.ae2` input to WAV at its original rate, channels and exact length
    (`postfilter`: the pitch postfilter on the decoded speech, `postfilter.py`)."""
    codec, device = _prepare(codec, "codec", device, threads)

    def process(inp, outs, mode):
        return decode_stream(inp, outs[0], codec, device, conceal=conceal, subtype=subtype,
                             clip=clip, progress=progress, postfilter=postfilter)
    return stamp(run_batch("decode", inputs, output, process, exts=CODE_EXTS, **batch), codec, device)


def encode_file(src: str, dst: str, codec=None, **kw) -> FileReport:
    from .api import _single
    return _single(run_encode([src], dst, codec, **kw))


def decode_file(src: str, dst: str, codec=None, **kw) -> FileReport:
    from .api import _single
    return _single(run_decode([src], dst, codec, **kw))


def file_info(path: str) -> dict:
    """`.ae2` header and totals (bitstream.read_info), or an audio file's format.
    `-` reads an .ae2 stream from stdin (packet by packet, memory flat)."""
    from .bitstream import MAGIC, read_info
    if path == "-":
        import sys
        stdin = sys.stdin.buffer
        if stdin.peek(4)[:4] != MAGIC:
            raise AudioError("stdin: not an .ae2 stream (info on stdin reads .ae2 only)")
        info = read_info(stdin)
        info["actual_bitrate_kbps"] = info.pop("bitrate_kbps")
        return {"file": "-", "kind": "ae2", **info}
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == MAGIC or path.endswith(".ae2"):
        info = read_info(path)
        info["actual_bitrate_kbps"] = info.pop("bitrate_kbps")  # header has bitrate_kbps
        return {"file": path, "kind": "ae2", **info}
    import soundfile as sf
    try:
        i = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"not an .ae2 or audio file ({str(e).split(':')[-1].strip()})") from None
    return {"file": path, "kind": "audio", "format": i.format, "subtype": i.subtype,
            "sample_rate": i.samplerate, "channels": i.channels, "frames": i.frames,
            "duration_s": i.frames / i.samplerate if i.samplerate else None}
