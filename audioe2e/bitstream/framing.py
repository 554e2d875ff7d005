"""Packet framing of ``.ae2``: bytes on the wire <-> ``Packet`` (sync, type, seq, varints, CRC).

Why a module of its own: the writer and the (strict or concealing) reader must frame packets
identically, and the reader's parsing must stay bounded: no allocation is sized from a length
field before it is checked against the limits in ``format``. See ``format`` for the layout.
"""
from __future__ import annotations

import struct
import zlib

from .format import _END_PAYLOAD, DATA, END, MAX_FRAMES_PER_PACKET, MAX_PAYLOAD, SYNC, Packet


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_packet(kind: bytes, seq: int, n_frames: int, payload: bytes) -> bytes:
    """One packet as written: sync, type, seq (u16), varint frame count and length, payload, CRC32."""
    pkt = (SYNC + kind + struct.pack("<H", seq & 0xFFFF) + _varint(n_frames)
           + _varint(len(payload)) + payload)
    return pkt + struct.pack("<I", zlib.crc32(pkt))


def packet_size(n_frames: int, payload_bytes: int) -> int:
    """Bytes `encode_packet` writes for a payload of `payload_bytes` (rate control counts them)."""
    return len(SYNC) + 1 + 2 + len(_varint(n_frames)) + len(_varint(payload_bytes)) + payload_bytes + 4


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


def parse_packet(b: _Buffer, at: int) -> Packet:
    """Parse the packet starting at buffer offset ``at``; raises _Truncated / _Corrupt."""
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
