"""The ``.ae2`` container: a neural codec's integer codes, streamed in self-delimiting packets.

Pure Python + numpy (no torch). Writing never seeks (works on a pipe); reading is incremental
(works on a pipe) and bounded: no allocation is sized from a length field before it is checked
against the limits below. All integers are little-endian.

File header::

    offset   size  field
    0        4     magic  b"AE2\\x00"
    4        1     version (1)
    5        4     header length N, u32 (<= 65536)
    9        N     header: UTF-8 JSON object (keys sorted, compact)
    9+N      4     CRC32 (zlib) of bytes 4 .. 9+N (version, length, JSON)

Header fields (``validate_header``): model (str), model_sha256 (str), model_rate, orig_rate,
channels, frame_size (samples per code frame at model_rate), n_q (1..64 quantiser stages in
use), codebook_size (1..65536), bitrate_kbps (nominal, number), entropy (bool),
frames_per_packet (1..4096), priors_sha256 (when entropy: ``entropy.priors_digest``). Extra
keys are kept as is.

Then packets, one after the other::

    offset   size  field
    0        2     sync marker b"\\xaeP" (lets a concealing reader resynchronise)
    2        1     type: b"D" (DATA) or b"E" (END)
    3        2     seq, u16: packet index mod 65536 (DATA and END share the counter)
    5        1-5   n_frames, LEB128 varint (1..4096 for DATA, 0 for END)
    .        1-5   payload length L, LEB128 varint (<= 1 MiB)
    .        L     payload
    .        4     CRC32 of every preceding byte of the packet, sync marker included

DATA payload: the codes ``[n_q, n_frames]`` of those frames. With entropy on, the bytes of
``entropy.encode_symbols`` (row q coded with prior q). With entropy off, row-major bit-packing
with ``b = ceil(log2(codebook_size))`` bits per code, most significant bit first, zero-padded
to a whole byte (``b = 0``, i.e. an empty payload, when codebook_size is 1).

END payload (16 bytes): n_samples u64 (exact length at orig_rate), total_frames u64. The file
ends right after the END packet. The writer emits full packets of ``frames_per_packet`` frames;
only the last DATA packet may be shorter.

Overhead: header ~270 bytes (~350 with priors_sha256); ~11 bytes per packet
(2 + 1 + 2 + 1-2 + 1-2 + 4), i.e. ~180 bit/s at 50 frames/s and 25 frames per packet. The priors are not in the file: the reader
gets them from the model (``priors_for_header``) and checks them against ``priors_sha256``.

Errors are ``BitstreamError`` (a ValueError) subclasses: NotAe2Error, UnsupportedVersionError,
HeaderError, TruncatedError, CorruptPacketError, MissingPacketError, PriorMismatchError.

Concealment (``Ae2Reader(conceal=True)``): a packet that fails (bad sync, bad length, CRC)
is skipped by scanning for the next sync marker that starts a packet with a valid CRC and a
later sequence number; each lost packet is replaced by ``FILL`` (-1) codes: ``frames_per_packet``
frames each, except that before END the lost frames are sized from END's total, so the frame
count stays exact. Lost packets are counted in ``.concealed``; a missing END sets
``.truncated`` and ``n_samples`` is estimated from the frames read.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .entropy import EntropyError, StaticPrior, decode_symbols, encode_symbols, priors_digest

MAGIC = b"AE2\x00"
VERSION = 1
SYNC = b"\xaeP"
DATA, END = b"D", b"E"
MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 1 << 20
MAX_FRAMES_PER_PACKET = 4096
MAX_NQ = 64
MAX_CODEBOOK = 1 << 16
FILL = -1  # code value of concealed frames
_END_PAYLOAD = struct.Struct("<QQ")


class BitstreamError(ValueError):
    """The .ae2 data is invalid; the message names the problem."""


class NotAe2Error(BitstreamError):
    pass


class UnsupportedVersionError(BitstreamError):
    pass


class HeaderError(BitstreamError):
    pass


class TruncatedError(BitstreamError):
    pass


class CorruptPacketError(BitstreamError):
    pass


class MissingPacketError(BitstreamError):
    pass


class PriorMismatchError(BitstreamError):
    pass


class Packet(NamedTuple):
    kind: bytes  # DATA or END
    seq: int  # u16 as on the wire
    n_frames: int
    payload: bytes
    size: int  # bytes on the wire


# ----------------------------------------------------------------------------- header
_INT_FIELDS = {"model_rate": (1, 10**7), "orig_rate": (1, 10**7), "channels": (1, 1024),
               "frame_size": (1, 10**7), "n_q": (1, MAX_NQ), "codebook_size": (1, MAX_CODEBOOK),
               "frames_per_packet": (1, MAX_FRAMES_PER_PACKET)}


def validate_header(h) -> dict:
    """Check types and bounds of the header fields; returns ``h``; raises HeaderError."""
    if not isinstance(h, dict):
        raise HeaderError("invalid header: not a JSON object")
    for k in ("model", "model_sha256"):
        if not isinstance(h.get(k), str):
            raise HeaderError(f"invalid header: field {k!r} missing or not a string")
    for k, (lo, hi) in _INT_FIELDS.items():
        v = h.get(k)
        if type(v) is not int or not lo <= v <= hi:
            raise HeaderError(f"invalid header: field {k!r} = {v!r} is not an integer in {lo}..{hi}")
    b = h.get("bitrate_kbps")
    if type(b) not in (int, float) or not 0 <= b < 1e6:
        raise HeaderError(f"invalid header: field 'bitrate_kbps' = {b!r} is not a number")
    if type(h.get("entropy")) is not bool:
        raise HeaderError("invalid header: field 'entropy' missing or not true/false")
    if h["entropy"] and not isinstance(h.get("priors_sha256"), str):
        raise HeaderError("invalid header: entropy-coded file without 'priors_sha256'")
    return h


def code_bits(codebook_size: int) -> int:
    """Bits per code when packed raw: ceil(log2(codebook_size)) (0 for a 1-entry codebook)."""
    return (int(codebook_size) - 1).bit_length()


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Row-major, MSB-first bit-packing of non-negative ints ``< 2**bits``."""
    flat = np.asarray(codes, dtype=np.int64).reshape(-1)
    if bits == 0 or flat.size == 0:
        return b""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((flat[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_codes(payload: bytes, n_q: int, n_frames: int, codebook_size: int) -> np.ndarray:
    """Inverse of ``pack_codes``; strict about length, padding and range (raises BitstreamError)."""
    bits = code_bits(codebook_size)
    n = n_q * n_frames
    if len(payload) != (n * bits + 7) // 8:
        raise BitstreamError(f"payload is {len(payload)} bytes, expected {(n * bits + 7) // 8}")
    if bits == 0 or n == 0:
        return np.zeros((n_q, n_frames), dtype=np.int64)
    allbits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    if allbits[n * bits:].any():
        raise BitstreamError("nonzero padding bits")
    weights = np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64)
    codes = allbits[: n * bits].reshape(n, bits).astype(np.int64) @ weights
    if codes.size and codes.max() >= codebook_size:
        raise BitstreamError(f"code {int(codes.max())} out of range for codebook size {codebook_size}")
    return codes.reshape(n_q, n_frames)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ----------------------------------------------------------------------------- writer
class Ae2Writer:
    """Stream codes into an .ae2 file object. Never seeks; flushes after each packet.

    ``header`` needs model, model_sha256, model_rate, orig_rate, channels, frame_size, n_q,
    codebook_size, bitrate_kbps (extra JSON-serialisable keys are kept); the writer sets
    ``entropy`` (priors given or not), ``frames_per_packet`` and ``priors_sha256``.
    ``priors``: one StaticPrior per quantiser stage with K == codebook_size, or None for raw codes.
    The file object is not closed by ``close``.
    """

    def __init__(self, fileobj, header: dict, priors: Sequence[StaticPrior] | None = None,
                 frames_per_packet: int = 25, flush: bool = True):
        self.f = fileobj
        self._flush = flush and hasattr(fileobj, "flush")
        h = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dict(header).items()}
        h["entropy"] = priors is not None
        h["frames_per_packet"] = frames_per_packet
        h.pop("priors_sha256", None)
        if priors is not None:
            priors = list(priors)
            h["priors_sha256"] = priors_digest(priors)
        validate_header(h)
        if priors is not None:
            if len(priors) != h["n_q"]:
                raise ValueError(f"{len(priors)} priors for n_q={h['n_q']}")
            if any(p.K != h["codebook_size"] for p in priors):
                raise ValueError(f"every prior must have K = codebook_size = {h['codebook_size']}")
        js = json.dumps(h, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(js) > MAX_HEADER:
            raise ValueError(f"header of {len(js)} bytes exceeds {MAX_HEADER}")
        self.header, self.priors, self.fpp = h, priors, frames_per_packet
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self.seq = 0
        self.n_frames = 0
        self.bytes_written = 0
        self.closed = False
        body = bytes([VERSION]) + struct.pack("<I", len(js)) + js
        self._emit(MAGIC + body + struct.pack("<I", zlib.crc32(body)))

    def _emit(self, b: bytes) -> None:
        self.f.write(b)
        self.bytes_written += len(b)
        if self._flush:
            self.f.flush()

    def _packet(self, kind: bytes, n_frames: int, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"packet payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}; "
                             "use fewer frames_per_packet")
        pkt = (SYNC + kind + struct.pack("<H", self.seq & 0xFFFF) + _varint(n_frames)
               + _varint(len(payload)) + payload)
        self._emit(pkt + struct.pack("<I", zlib.crc32(pkt)))
        self.seq += 1

    def _data_packet(self, codes: np.ndarray) -> None:
        if self.priors is not None:
            payload = encode_symbols(codes, self.priors)
        else:
            payload = pack_codes(codes, code_bits(self.header["codebook_size"]))
        self._packet(DATA, codes.shape[1], payload)
        self.n_frames += codes.shape[1]

    def write(self, codes: np.ndarray) -> None:
        """Append ``codes [n_q, F]`` (ints in 0..codebook_size-1); emits every full packet."""
        if self.closed:
            raise ValueError("write() after close()")
        c = np.asarray(codes)
        n_q, K = self.header["n_q"], self.header["codebook_size"]
        if c.ndim != 2 or c.shape[0] != n_q:
            raise ValueError(f"codes must be [n_q={n_q}, F], got shape {c.shape}")
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {c.dtype}")
        if c.size and (c.min() < 0 or c.max() >= K):
            raise ValueError(f"codes out of range 0..{K - 1}")
        if not c.shape[1]:
            return
        self._pending.append(c.astype(np.int64))
        self._n_pending += c.shape[1]
        if self._n_pending >= self.fpp:
            buf = np.concatenate(self._pending, axis=1)
            n_full = buf.shape[1] // self.fpp * self.fpp
            for i in range(0, n_full, self.fpp):
                self._data_packet(buf[:, i:i + self.fpp])
            rest = buf[:, n_full:]
            self._pending, self._n_pending = ([rest] if rest.shape[1] else []), rest.shape[1]

    def close(self, n_samples: int) -> None:
        """Flush the last (short) packet and write END with the exact sample count at orig_rate."""
        if self.closed:
            return
        if type(n_samples) is not int and not isinstance(n_samples, np.integer) or n_samples < 0:
            raise ValueError(f"n_samples must be an int >= 0, got {n_samples!r}")
        if self._n_pending:
            self._data_packet(np.concatenate(self._pending, axis=1))
            self._pending, self._n_pending = [], 0
        self._packet(END, 0, _END_PAYLOAD.pack(int(n_samples), self.n_frames))
        self.closed = True
        if hasattr(self.f, "flush"):
            self.f.flush()


# ----------------------------------------------------------------------------- reader
class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


class _Buffer:
    """Bytes read from a stream but not yet consumed; reads only what is needed (``read1``)."""

    def __init__(self, f):
        # read1 returns what is available (a pipe never waits for bytes not yet needed)
        self._read1 = getattr(f, "read1", None)
        self._read = f.read
        self.data = bytearray()
        self.pos = 0
        self.eof = False
        self.offset = 0  # stream offset of data[0]

    def have(self, n: int, at: int | None = None) -> bool:
        """Make ``n`` bytes available from ``at`` (default pos); False if the stream ends first."""
        at = self.pos if at is None else at
        while len(self.data) - at < n and not self.eof:
            missing = n - (len(self.data) - at)
            chunk = self._read1(max(missing, 1 << 16)) if self._read1 else self._read(missing)
            if not chunk:
                self.eof = True
            else:
                self.data += chunk
        return len(self.data) - at >= n

    def discard(self) -> None:
        """Forget consumed bytes (keeps memory flat)."""
        if self.pos > 1 << 16:
            del self.data[: self.pos]
            self.offset += self.pos
            self.pos = 0


class Ae2Reader:
    """Read an .ae2 stream: ``.header`` after construction; iterate for ``[n_q, F]`` int64 codes.

    ``priors_for_header(header) -> list[StaticPrior]`` supplies the entropy priors (needed
    only to decode an entropy-coded file; checked against the header's ``priors_sha256``).
    After iteration: ``.n_samples``, ``.n_frames``, ``.packets`` (DATA packets), ``.concealed``,
    ``.truncated``, ``.skipped_bytes``. See the module docstring for ``conceal=True``.
    """

    def __init__(self, fileobj, priors_for_header: Callable[[dict], Sequence[StaticPrior] | None] | None = None,
                 conceal: bool = False):
        self.buf = _Buffer(fileobj)
        self.conceal = conceal
        self.header = self._read_header()
        self.n_samples: int | None = None
        self.n_frames = 0
        self.packets = 0
        self.concealed = 0
        self.truncated = False
        self.skipped_bytes = 0
        self.bytes_read = 0
        self._started = False
        self.priors = None
        if priors_for_header is not None and self.header["entropy"]:
            pr = priors_for_header(self.header)
            if pr is not None:
                pr = list(pr)
                if priors_digest(pr) != self.header["priors_sha256"]:
                    raise PriorMismatchError("entropy priors do not match the ones this file was "
                                             "written with (different model?)")
                self.priors = pr

    # -- header
    def _read_header(self) -> dict:
        b = self.buf
        if not b.have(4):
            got = bytes(b.data)
            if not got:
                raise NotAe2Error("not an .ae2 file (empty)")
            if MAGIC.startswith(got):
                raise TruncatedError("truncated file: cut off inside the magic")
            raise NotAe2Error("not an .ae2 file (bad magic)")
        if bytes(b.data[:4]) != MAGIC:
            raise NotAe2Error("not an .ae2 file (bad magic)")
        if not b.have(9):
            raise TruncatedError("truncated file: header cut off")
        if b.data[4] != VERSION:
            raise UnsupportedVersionError(f"unsupported .ae2 version {b.data[4]} (this build reads {VERSION})")
        (n,) = struct.unpack_from("<I", b.data, 5)
        if n > MAX_HEADER:
            raise HeaderError(f"header length {n} exceeds limit {MAX_HEADER}")
        if not b.have(13 + n):
            raise TruncatedError("truncated file: header cut off")
        body = bytes(b.data[4:9 + n])
        (crc,) = struct.unpack_from("<I", b.data, 9 + n)
        if zlib.crc32(body) != crc:
            raise HeaderError("header CRC mismatch")
        try:
            h = json.loads(body[5:].decode("utf-8"))
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise HeaderError(f"invalid header: not UTF-8 JSON ({e})") from None
        b.pos = 13 + n
        return validate_header(h)

    # -- packets
    def _parse(self, at: int) -> Packet:
        """Parse the packet starting at buffer offset ``at``; raises _Truncated / _Corrupt."""
        b = self.buf
        if not b.have(5, at):
            raise _Truncated()
        if bytes(b.data[at:at + 2]) != SYNC:
            raise _Corrupt("bad sync marker")
        kind = bytes(b.data[at + 2:at + 3])
        if kind not in (DATA, END):
            raise _Corrupt(f"unknown packet type 0x{kind[0]:02x}")
        (seq,) = struct.unpack_from("<H", b.data, at + 3)
        p = at + 5
        fields = []
        for name, limit in (("frame count", MAX_FRAMES_PER_PACKET), ("length", MAX_PAYLOAD)):
            v, shift = 0, 0
            while True:
                if not b.have(p + 1 - at, at):
                    raise _Truncated()
                byte = b.data[p]
                p += 1
                v |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
                if shift >= 35:
                    raise _Corrupt(f"{name} field is not a valid varint")
            if v > limit:
                raise _Corrupt(f"{name} field {v} exceeds limit {limit}")
            fields.append(v)
        n_frames, length = fields
        if not b.have(p - at + length + 4, at):
            raise _Truncated()
        end = p + length
        (crc,) = struct.unpack_from("<I", b.data, end)
        if zlib.crc32(memoryview(b.data)[at:end]) != crc:
            raise _Corrupt("CRC mismatch")
        if kind == DATA and n_frames == 0:
            raise _Corrupt("DATA packet with 0 frames")
        if kind == END and (n_frames != 0 or length != _END_PAYLOAD.size):
            raise _Corrupt("malformed END packet")
        return Packet(kind, seq, n_frames, bytes(b.data[p:end]), end + 4 - at)

    def _resync(self) -> Packet | None:
        """Conceal mode: skip from the bad packet at ``buf.pos`` to the next valid one.

        A candidate starts with the sync marker, has a valid CRC and a sequence number not
        behind the expected one. Returns it (``buf.pos`` at its start), or None at end of
        stream. Consumed bytes are discarded as the scan goes, so memory stays bounded.
        """
        b = self.buf
        b.pos += 1
        self.skipped_bytes += 1
        while True:
            b.discard()
            i = b.data.find(SYNC, b.pos)
            if i < 0:
                keep = len(b.data) if b.eof else max(b.pos, len(b.data) - 1)
                self.skipped_bytes += keep - b.pos
                b.pos = keep
                if b.eof:
                    return None
                b.have(len(b.data) - b.pos + (1 << 16))
                continue
            self.skipped_bytes += i - b.pos
            b.pos = i
            try:
                pkt = self._parse(i)
                if (pkt.seq - self.packets_seen) % 65536 < 32768:
                    return pkt
            except (_Truncated, _Corrupt):
                pass
            b.pos += 1
            self.skipped_bytes += 1

    def iter_packets(self) -> Iterator[tuple[Packet, int]]:
        """Validated packets in order: yields (packet, lost), ``lost`` = packets missing just
        before it (always 0 unless ``conceal``). Stops after END, setting n_samples/n_frames
        (the caller adds each DATA packet's frames to ``n_frames`` as it goes)."""
        if self._started:
            raise RuntimeError("an Ae2Reader can be iterated once")
        self._started = True
        b = self.buf
        self.packets_seen = 0  # packets accounted for (read or lost) = the expected seq
        while True:
            b.discard()
            try:
                pkt = self._parse(b.pos)
            except (_Truncated, _Corrupt) as e:
                if self.conceal:
                    pkt = self._resync()
                    if pkt is None:
                        self._finish_truncated()
                        return
                elif isinstance(e, _Truncated):
                    more = len(b.data) - b.pos
                    where = f"; packet {self.packets_seen} cut off after {more} bytes" if more else ""
                    raise TruncatedError(f"truncated file: missing END packet after "
                                         f"{self.packets_seen} packets{where}") from None
                else:
                    raise CorruptPacketError(f"packet {self.packets_seen}: {e}") from None
            lost = (pkt.seq - self.packets_seen) % 65536
            b.pos += pkt.size
            self.bytes_read = b.offset + b.pos
            if lost >= 32768:  # behind the expected number: a duplicate or reordered packet
                if self.conceal:
                    self.skipped_bytes += pkt.size
                    continue
                raise MissingPacketError(f"packet {self.packets_seen}: out-of-order sequence number "
                                         f"{pkt.seq} after {(self.packets_seen - 1) % 65536}")
            if lost and not self.conceal:
                raise MissingPacketError(f"packet {self.packets_seen} missing (sequence jump "
                                         f"{(self.packets_seen - 1) % 65536}\u2192{pkt.seq})")
            self.packets_seen += lost + 1
            if pkt.kind == END:
                n_samples, total = _END_PAYLOAD.unpack(pkt.payload)
                if lost:
                    yield pkt, lost
                elif total != self.n_frames and not self.conceal:
                    raise CorruptPacketError(f"END packet: total of {total} frames does not match "
                                             f"the {self.n_frames} frames read")
                self.n_samples, self.n_frames = n_samples, total
                if not self.conceal and b.have(1):
                    raise BitstreamError("trailing data after END packet")
                return
            self.packets += 1
            yield pkt, lost

    def _finish_truncated(self) -> None:
        """Conceal mode, no END: estimate n_samples from the frames read."""
        self.truncated = True
        h = self.header
        self.n_samples = int(round(self.n_frames * h["frame_size"] * h["orig_rate"] / h["model_rate"]))

    def _decode(self, pkt: Packet) -> np.ndarray:
        h = self.header
        try:
            if h["entropy"]:
                return decode_symbols(pkt.payload, self.priors, pkt.n_frames)
            return unpack_codes(pkt.payload, h["n_q"], pkt.n_frames, h["codebook_size"])
        except (EntropyError, BitstreamError) as e:
            raise CorruptPacketError(f"packet {pkt.seq}: payload does not decode ({e})") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        h = self.header
        if h["entropy"] and self.priors is None:
            raise PriorMismatchError("file is entropy-coded: pass priors_for_header to decode it")
        fpp, n_q = h["frames_per_packet"], h["n_q"]
        for pkt, lost in self.iter_packets():
            if lost:
                if pkt.kind == END:  # size the lost frames from END's exact total
                    missing = _END_PAYLOAD.unpack(pkt.payload)[1] - self.n_frames
                    sizes = [min(fpp, max(missing - fpp * i, 0)) for i in range(lost)]
                else:
                    sizes = [fpp] * lost
                for n in sizes:
                    self.concealed += 1
                    if n:
                        self.n_frames += n
                        yield np.full((n_q, n), FILL, dtype=np.int64)
                if pkt.kind == END:
                    continue
            codes = self._decode(pkt)
            self.n_frames += pkt.n_frames
            yield codes

    @property
    def duration(self) -> float | None:
        return None if self.n_samples is None else self.n_samples / self.header["orig_rate"]


def read_info(path_or_fileobj) -> dict:
    """Header and totals of an .ae2 file (validates every packet's CRC; does not decode codes)."""
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        with open(path_or_fileobj, "rb") as f:
            return read_info(f)
    r = Ae2Reader(path_or_fileobj)
    for pkt, _ in r.iter_packets():
        r.n_frames += pkt.n_frames
    dur = r.duration
    size = r.bytes_read
    h = r.header
    return {
        "header": h,
        "version": VERSION,
        "packets": r.packets,
        "n_frames": r.n_frames,
        "n_samples": r.n_samples,
        "duration_s": dur,
        "file_bytes": size,
        "bitrate_kbps": (size * 8 / dur / 1000) if dur else None,
        "nominal_bitrate_kbps": h["bitrate_kbps"],
    }
