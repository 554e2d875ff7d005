"""Reading ``.ae2``: ``Ae2Reader``, incremental (works on a pipe), strict by default, bounded.

Why a module of its own: decoding is the side that meets damaged or hostile input, so its
checks (named errors, limits before allocation) and the optional concealment (resync after a
bad packet, ``FILL`` codes for lost ones) are kept together here, apart from the writer.
"""
from __future__ import annotations

import json
import struct
import zlib
from typing import Callable, Iterator, Sequence

import numpy as np

from ..entropy import EntropyError, StaticPrior, decode_symbols, priors_digest
from .format import (_END_PAYLOAD, END, FILL, MAGIC, MAX_HEADER, SYNC, VARIABLE_VERSION, VERSION, BitstreamError,
                     CorruptPacketError, HeaderError, MissingPacketError, NotAe2Error, Packet,
                     PriorMismatchError, TruncatedError, UnsupportedVersionError, unpack_codes,
                     validate_header)
from .framing import _Buffer, _Corrupt, _Truncated, parse_packet
from .stages import decode_variable


class Ae2Reader:
    """Read an .ae2 stream: ``.header`` after construction; iterate for ``[n_q, F]`` int64 codes
    (``stages.ABSENT`` marks the stages a frame of a variable-stage file does not code).

    ``priors_for_header(header) -> list[StaticPrior]`` supplies the entropy priors (needed
    only to decode an entropy-coded file; checked against the header's ``priors_sha256``).
    After iteration: ``.n_samples``, ``.n_frames``, ``.packets`` (DATA packets), ``.concealed``,
    ``.truncated``, ``.skipped_bytes``. See the ``bitstream.format`` docstring for ``conceal=True``.
    """

    def __init__(self, fileobj, priors_for_header: Callable[[dict], Sequence[StaticPrior] | None] | None = None,
                 conceal: bool = False):
        self.buf = _Buffer(fileobj)
        self.conceal = conceal
        self.header = self._read_header()
        self.header_bytes = self.buf.offset + self.buf.pos  # magic to header CRC
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
        self.version = b.data[4]
        if self.version not in (VERSION, VARIABLE_VERSION):
            raise UnsupportedVersionError(f"unsupported .ae2 version {b.data[4]} "
                                          f"(this build reads {VERSION} and {VARIABLE_VERSION})")
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
        validate_header(h)
        if h.get("variable_stages", False) != (self.version == VARIABLE_VERSION):
            raise HeaderError(f"invalid header: version {self.version} with variable_stages = "
                              f"{h.get('variable_stages', False)}")
        return h

    # -- packets (framing: ``framing.parse_packet``)
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
                pkt = parse_packet(b, i)
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
                pkt = parse_packet(b, b.pos)
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
            if h.get("variable_stages"):
                return decode_variable(pkt.payload, self.priors if h["entropy"] else None, h["n_q"],
                                       pkt.n_frames, h["codebook_size"])
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
