"""Inspecting ``.ae2``: ``read_info`` (header and totals, behind ``audioe2e info``).

Why a module of its own: inspection validates every packet but decodes no codes and needs no
priors or model; it is a use of the reader, not part of it.
"""
from __future__ import annotations

import os

from .reader import Ae2Reader


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
        "version": r.version,
        "packets": r.packets,
        "n_frames": r.n_frames,
        "n_samples": r.n_samples,
        "duration_s": dur,
        "file_bytes": size,
        "bitrate_kbps": (size * 8 / dur / 1000) if dur else None,
        # the packets alone (framing and END included, the file header not): what --bitrate bounds
        "stream_kbps": ((size - r.header_bytes) * 8 / dur / 1000) if dur else None,
        "nominal_bitrate_kbps": h["bitrate_kbps"],
    }
