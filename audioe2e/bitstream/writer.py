"""Writing ``.ae2``: ``Ae2Writer`` streams codes into packets, never seeking (works on a pipe).

Why a module of its own: encoding is one direction of the container; it shares only the
format definitions (``format``) and packet framing (``framing``) with the reader.
"""
from __future__ import annotations

import json
import struct
import zlib
from typing import Callable, Sequence

import numpy as np

from ..entropy import StaticPrior, encode_symbols, priors_digest
from .format import (_END_PAYLOAD, DATA, END, MAGIC, MAX_HEADER, MAX_PAYLOAD, VARIABLE_VERSION,
                     VERSION, code_bits, pack_codes, validate_header)
from .framing import encode_packet
from .stages import ABSENT, encode_variable, stage_counts


class Ae2Writer:
    """Stream codes into an .ae2 file object. Never seeks; flushes after each packet.

    ``header`` needs model, model_sha256, model_rate, orig_rate, channels, frame_size, n_q,
    codebook_size, bitrate_kbps (extra JSON-serialisable keys are kept); the writer sets
    ``entropy`` (priors given or not), ``frames_per_packet`` and ``priors_sha256``. With
    ``variable_stages: true`` in the header (a version-2 file) codes may hold ``ABSENT`` for
    the stages a frame does not code (a prefix of stages per frame, at least one).
    ``priors``: one StaticPrior per quantiser stage with K == codebook_size, or None for raw codes.
    ``packet_codes(codes, final)``: applied to each packet's codes before they are coded
    (variable bitrate chooses each frame's stages there, ``ratecontrol.StageAllocator``);
    ``final`` is true for the short packet ``close`` writes.
    The file object is not closed by ``close``.
    """

    def __init__(self, fileobj, header: dict, priors: Sequence[StaticPrior] | None = None,
                 frames_per_packet: int = 25, flush: bool = True,
                 packet_codes: Callable[[np.ndarray, bool], np.ndarray] | None = None):
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
        self.header, self.priors, self.fpp, self.packet_codes = h, priors, frames_per_packet, packet_codes
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self.seq = 0
        self.n_frames = 0
        self.bytes_written = 0
        self.closed = False
        self.variable = bool(h.get("variable_stages", False))
        if not self.variable:
            h.pop("variable_stages", None)
        version = VARIABLE_VERSION if self.variable else VERSION
        body = bytes([version]) + struct.pack("<I", len(js)) + js
        self._emit(MAGIC + body + struct.pack("<I", zlib.crc32(body)))
        self.header_bytes = self.bytes_written

    def _emit(self, b: bytes) -> None:
        self.f.write(b)
        self.bytes_written += len(b)
        if self._flush:
            self.f.flush()

    def _packet(self, kind: bytes, n_frames: int, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"packet payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}; "
                             "use fewer frames_per_packet")
        self._emit(encode_packet(kind, self.seq, n_frames, payload))
        self.seq += 1

    def _data_packet(self, codes: np.ndarray, final: bool = False) -> None:
        if self.packet_codes is not None:
            codes = self.packet_codes(codes, final)
        if self.variable:
            payload = encode_variable(codes, self.priors, self.header["codebook_size"])
        elif self.priors is not None:
            payload = encode_symbols(codes, self.priors)
        else:
            payload = pack_codes(codes, code_bits(self.header["codebook_size"]))
        self._packet(DATA, codes.shape[1], payload)
        self.n_frames += codes.shape[1]

    def write(self, codes: np.ndarray) -> None:
        """Append ``codes [n_q, F]`` (ints in 0..codebook_size-1, or ABSENT in a variable-stage
        file); emits every full packet."""
        if self.closed:
            raise ValueError("write() after close()")
        c = np.asarray(codes)
        n_q, K = self.header["n_q"], self.header["codebook_size"]
        if c.ndim != 2 or c.shape[0] != n_q:
            raise ValueError(f"codes must be [n_q={n_q}, F], got shape {c.shape}")
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {c.dtype}")
        if self.variable:
            stage_counts(c)
        coded = c != ABSENT if self.variable else np.ones(c.shape, dtype=bool)
        if c.size and (c[coded].min(initial=0) < 0 or c.max() >= K):
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
            self._data_packet(np.concatenate(self._pending, axis=1), final=True)
            self._pending, self._n_pending = [], 0
        self._packet(END, 0, _END_PAYLOAD.pack(int(n_samples), self.n_frames))
        self.closed = True
        if hasattr(self.f, "flush"):
            self.f.flush()

