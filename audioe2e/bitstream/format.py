"""The ``.ae2`` format: constants, errors, header validation and raw code packing.

Why a module of its own: the writer, the reader and ``read_info`` must agree on every byte,
so the definitions they share (and the specification below) live in one place.

The ``.ae2`` container: a neural codec's integer codes, streamed in self-delimiting packets.

Pure Python + numpy (no torch). Writing never seeks (works on a pipe); reading is incremental
(works on a pipe) and bounded: no allocation is sized from a length field before it is checked
against the limits below. All integers are little-endian.

File header::

    offset   size  field
    0        4     magic  b"AE2\\x00"
    4        1     version: 1, or 2 when ``variable_stages`` (``bitstream.stages``)
    5        4     header length N, u32 (<= 65536)
    9        N     header: UTF-8 JSON object (keys sorted, compact)
    9+N      4     CRC32 (zlib) of bytes 4 .. 9+N (version, length, JSON)

Header fields (``validate_header``): model (str), model_sha256 (str), model_rate, orig_rate,
channels, frame_size (samples per code frame at model_rate), n_q (1..64 quantiser stages in
use), codebook_size (1..65536), bitrate_kbps (nominal, number), entropy (bool),
frames_per_packet (1..4096), priors_sha256 (when entropy: ``entropy.priors_digest``),
variable_stages (optional bool: each frame codes its own number of stages, version 2). Extra
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

DATA payload (version 1; version 2's is in ``bitstream.stages``): the codes ``[n_q, n_frames]``
of those frames. With entropy on, the bytes of
``entropy.encode_symbols`` (row q coded with prior q). With entropy off, row-major bit-packing
with ``b = ceil(log2(codebook_size))`` bits per code, most significant bit first, zero-padded
to a whole byte (``b = 0``, i.e. an empty payload, when codebook_size is 1).

END payload (16 bytes): n_samples u64 (exact length at orig_rate), total_frames u64. The file
ends right after the END packet. The writer emits full packets of ``frames_per_packet`` frames;
only the last DATA packet may be shorter.

Overhead: header ~270 bytes (~350 with priors_sha256, ~390 with variable_stages too); ~11
bytes per packet (2 + 1 + 2 + 1-2 + 1-2 + 4), plus ~3 bytes of entropy-coder flush: ~60 bit/s
at 50 frames/s and 100 frames per packet (`encode`'s default 2 s packets), ~230 bit/s with 25.
The priors are not in the file: the reader gets them from the model (``priors_for_header``)
and checks them against ``priors_sha256``.

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

import struct
from typing import NamedTuple

import numpy as np

MAGIC = b"AE2\x00"
VERSION = 1  # files with every stage in every frame (readable by every build)
VARIABLE_VERSION = 2  # files with a per-frame number of stages (``variable_stages``)
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
    if type(h.get("variable_stages", False)) is not bool:
        raise HeaderError("invalid header: field 'variable_stages' is not true/false")
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
