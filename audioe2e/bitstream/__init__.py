"""The ``.ae2`` container: a neural codec's integer codes, streamed in self-delimiting packets.

Why a package: one job per module. ``format`` defines the bytes (constants, errors, header
fields, raw code packing; its docstring is the specification), ``framing`` turns packets into
bytes and back, ``writer`` and ``reader`` stream them, ``stages`` codes
payloads with a per-frame number of stages (version 2), ``info`` inspects a file. The names
below are the public API: import them from ``audioe2e.bitstream``.
"""
from .format import (DATA, END, FILL, MAGIC, MAX_CODEBOOK, MAX_FRAMES_PER_PACKET,  # noqa: F401
                     MAX_HEADER, MAX_NQ, MAX_PAYLOAD, SYNC, VARIABLE_VERSION, VERSION, BitstreamError,
                     CorruptPacketError, HeaderError, MissingPacketError, NotAe2Error, Packet,
                     PriorMismatchError, TruncatedError, UnsupportedVersionError, code_bits,
                     pack_codes, unpack_codes, validate_header)
from .info import read_info  # noqa: F401
from .stages import ABSENT, stage_counts  # noqa: F401
from .reader import Ae2Reader  # noqa: F401
from .writer import Ae2Writer  # noqa: F401
