"""Payloads with a per-frame number of quantiser stages (``.ae2`` version 2).

Why: a residual quantiser's later stages refine what the first ones coded, and a frame of
silence needs few of them. Files written with ``variable_stages`` carry, per frame, how many
stages were coded (1..n_q, always a prefix of the stages), so an encoder can spend a packet's
bits where the speech is (``ratecontrol``). In code arrays a stage not coded for a frame is
``ABSENT``; it contributes nothing to the decoded latent.

DATA payload of a version-2 file, with entropy coding: one range-coder stream (``entropy.
encode_rows``) holding first the stage-count row -- per frame ``(n_f - n_{f-1}) mod n_q``
with ``n_{-1} = n_q`` at each packet start (packets decode on their own), coded with
``count_prior(n_q)`` (a fixed table: 3/4 for "same as the previous frame") -- then, for each
stage q, the codes of the frames with ``n_f > q``, coded with the stage's prior. Without
entropy coding: the counts ``n_f - 1`` packed in ``code_bits(n_q)`` bits each, then the present
codes stage by stage in ``code_bits(codebook_size)`` bits each, one bit-packed string
(``format.pack_codes``), zero-padded to a whole byte.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..entropy import RowDecoder, StaticPrior, encode_rows
from .format import BitstreamError, code_bits, pack_codes

ABSENT = -2  # code value of a stage not coded for a frame (FILL, -1, marks lost frames)
_SAME_SHARE_BITS = 2  # count_prior: "same count as the previous frame" gets 1 - 2**-2 = 3/4


def count_prior(n_q: int) -> StaticPrior:
    """The fixed table of stage-count changes (part of the format, not of a model)."""
    total = 1 << 16
    if n_q == 1:
        return StaticPrior(np.array([total]))
    rest = total >> _SAME_SHARE_BITS
    f = np.full(n_q, rest // (n_q - 1), dtype=np.int64)
    f[0] = total - rest
    f[1:1 + rest % (n_q - 1)] += 1
    return StaticPrior(f)


def stage_counts(codes: np.ndarray) -> np.ndarray:
    """``[F]`` number of coded stages per frame of ``codes [n_q, F]`` (codes >= 0 or ABSENT);
    raises ValueError unless each frame's coded stages are a non-empty prefix."""
    present = codes != ABSENT
    n = present.sum(axis=0)
    if codes.shape[1] and (n.min() < 1 or (present != (np.arange(codes.shape[0])[:, None] < n)).any()):
        raise ValueError("each frame must code a prefix of the stages (at least the first); "
                         f"later ones ABSENT ({ABSENT})")
    return n


def count_symbols(n: np.ndarray, n_q: int) -> np.ndarray:
    """The coded stage-count row: each frame's change from the previous (n_q before the first)."""
    prev = np.concatenate([[n_q], n[:-1]])
    return (n - prev) % n_q


def _counts_from_symbols(d: np.ndarray, n_q: int) -> np.ndarray:
    n = np.empty_like(d)
    prev = n_q
    for i, s in enumerate(d.tolist()):
        prev = (prev - 1 + s) % n_q + 1
        n[i] = prev
    return n


def _scatter(n: np.ndarray, rows: list[np.ndarray], n_q: int) -> np.ndarray:
    codes = np.full((n_q, n.size), ABSENT, dtype=np.int64)
    for q, row in enumerate(rows):
        codes[q, n > q] = row
    return codes


def encode_variable(codes: np.ndarray, priors: Sequence[StaticPrior] | None, codebook_size: int) -> bytes:
    """Payload of one packet's ``codes [n_q, F]`` (see the module docstring)."""
    n_q = codes.shape[0]
    n = stage_counts(codes)
    rows = [codes[q, n > q] for q in range(n_q)]
    if priors is not None:
        return encode_rows([count_symbols(n, n_q)] + rows, [count_prior(n_q)] + list(priors))
    cb, kb = code_bits(n_q), code_bits(codebook_size)
    bits = [((n[:, None] - 1) >> np.arange(cb - 1, -1, -1)) & 1] if cb else []
    bits += [(r[:, None] >> np.arange(kb - 1, -1, -1)) & 1 for r in rows if kb]
    flat = np.concatenate([b.reshape(-1) for b in bits]) if bits else np.zeros(0, np.int64)
    return pack_codes(flat, 1)


def decode_variable(payload: bytes, priors: Sequence[StaticPrior] | None, n_q: int, n_frames: int,
                    codebook_size: int) -> np.ndarray:
    """Inverse of ``encode_variable``: ``[n_q, n_frames]`` with ABSENT for stages not coded.
    Raises BitstreamError (or entropy.EntropyError) on anything it would not have written."""
    if priors is not None:
        dec = RowDecoder(payload)
        n = _counts_from_symbols(dec.read(count_prior(n_q), n_frames), n_q)
        rows = [dec.read(p, int((n > q).sum())) for q, p in enumerate(priors)]
        dec.finish()
        return _scatter(n, rows, n_q)
    cb, kb = code_bits(n_q), code_bits(codebook_size)
    allbits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))

    def take(at: int, count: int, width: int) -> np.ndarray:
        if at + count * width > allbits.size:
            raise BitstreamError(f"payload is {len(payload)} bytes, too short for its codes")
        if not width:
            return np.zeros(count, np.int64)
        return allbits[at:at + count * width].reshape(count, width).astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))

    n = take(0, n_frames, cb) + 1
    if n.size and n.max() > n_q:
        raise BitstreamError(f"stage count {int(n.max())} out of range 1..{n_q}")
    at, rows = n_frames * cb, []
    for q in range(n_q):
        k = int((n > q).sum())
        rows.append(take(at, k, kb))
        at += k * kb
    if len(payload) != (at + 7) // 8:
        raise BitstreamError(f"payload is {len(payload)} bytes, expected {(at + 7) // 8}")
    if allbits[at:].any():
        raise BitstreamError("nonzero padding bits")
    if any(r.size and r.max() >= codebook_size for r in rows):
        raise BitstreamError(f"code out of range for codebook size {codebook_size}")
    return _scatter(n, rows, n_q)
