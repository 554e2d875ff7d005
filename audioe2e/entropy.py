"""Entropy coding of codec indices with static integer priors.

Why integer tables: a range coder only decodes what it encoded if both sides use the *same*
fixed-point model, bit for bit. Floating-point probabilities rebuilt on another machine (other
BLAS, other summation order) may quantise differently, so priors are stored as integer
frequency tables and the coder is fed a table it reproduces exactly.

Coder: ``constriction.stream.queue.RangeEncoder`` (32-bit words, 24-bit probability precision)
with a ``Categorical(perfect=False)`` model. Its fast quantiser maps float weights ``w_i`` to the
left cumulative ``floor(cum_i * (2**24 - K) / sum(w)) + i``. We pass ``w_i = f_i * 2**(24-b) - 1``
where ``f_i >= 1`` sums to ``2**b``: then ``sum(w) = 2**24 - K``, the scale is exactly 1.0, every
partial sum is an integer below 2**24 (exact in float32 and float64), and the coder's frequency
of symbol ``i`` is exactly ``f_i * 2**(24-b)`` -- the stored table, on every IEEE machine.

Layout of one coded block (``encode_symbols``): rows ``q = 0..n_q-1`` of ``symbols [n_q, F]``
are encoded one after the other into one range-coder stream, row ``q`` with ``priors[q]``
(rows with a one-symbol alphabet carry no information and are skipped). The compressed 32-bit
words are written big-endian with trailing zero bytes dropped (the decoder pads with zeros).
``decode_symbols`` re-encodes what it decoded and requires the identical bytes back, so
garbage raises ``EntropyError`` instead of yielding plausible codes.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

PRECISION = 24  # constriction's default range coder: probabilities in units of 2**-24
MAX_SYMBOLS = 1 << 16  # largest alphabet (codebook_size) we accept


class EntropyError(ValueError):
    """Entropy-coded data (or a prior) is invalid."""


class StaticPrior:
    """Integer frequency table over ``K`` symbols: ``freqs[i] >= 1``, ``sum(freqs) == 2**total_bits``.

    ``total_bits`` is at most 24 (the coder's precision) and at least ``ceil(log2 K)``.
    Serialise with ``to_array()`` (uint32 ``[K]``) and ``StaticPrior.from_array``.
    """

    __slots__ = ("freqs", "total_bits", "_model")

    def __init__(self, freqs, total_bits: int | None = None):
        f = np.asarray(freqs)
        if f.ndim != 1 or f.size < 1 or f.size > MAX_SYMBOLS:
            raise EntropyError(f"prior must be a 1-D table of 1..{MAX_SYMBOLS} entries, got shape {f.shape}")
        if not np.issubdtype(f.dtype, np.integer):
            raise EntropyError(f"prior frequencies must be integers, got {f.dtype}")
        if (f < 1).any():
            raise EntropyError("prior frequencies must all be >= 1")
        total = int(f.astype(np.int64).sum())
        bits = total.bit_length() - 1
        if total != 1 << bits or bits > PRECISION:
            raise EntropyError(f"prior frequencies must sum to a power of two <= 2**{PRECISION}, got {total}")
        if total_bits is not None and bits != total_bits:
            raise EntropyError(f"prior sums to 2**{bits}, expected 2**{total_bits}")
        self.freqs = f.astype(np.uint32)
        self.freqs.setflags(write=False)
        self.total_bits = bits
        self._model = None

    @property
    def K(self) -> int:
        return int(self.freqs.size)

    @classmethod
    def from_counts(cls, counts, total_bits: int = PRECISION) -> "StaticPrior":
        """Quantise symbol counts (ints or floats >= 0, length K) to a table summing to 2**total_bits.

        Every symbol gets at least 1; the rest is shared in proportion to the counts (floor, then
        largest remainders, ties to the lower index). Integer counts use exact integer arithmetic.
        All-zero counts give the uniform prior.
        """
        c = np.asarray(counts)
        K = c.size
        if c.ndim != 1 or not 1 <= K <= MAX_SYMBOLS:
            raise EntropyError(f"counts must be a 1-D array of 1..{MAX_SYMBOLS} entries")
        if not 0 < total_bits <= PRECISION or K > 1 << total_bits:
            raise EntropyError(f"total_bits={total_bits} cannot hold {K} symbols (max {PRECISION})")
        if not np.all(np.isfinite(c)) or (c < 0).any():
            raise EntropyError("counts must be finite and >= 0")
        if not np.issubdtype(c.dtype, np.integer):
            # floats: map to integers with 2**40 resolution (deterministic elementwise ops)
            s = float(c.sum())
            c = np.zeros(K, np.int64) if s <= 0 else np.floor(c / s * float(1 << 40)).astype(np.int64)
        ints = [int(x) for x in c.tolist()]
        C = sum(ints)
        if C == 0:
            return uniform_prior(K, total_bits)
        free = (1 << total_bits) - K
        base = [x * free // C for x in ints]
        rem = [x * free % C for x in ints]
        left = free - sum(base)
        order = sorted(range(K), key=lambda i: (-rem[i], i))
        for i in order[:left]:
            base[i] += 1
        return cls(np.array(base, dtype=np.int64) + 1, total_bits)

    @classmethod
    def from_array(cls, arr) -> "StaticPrior":
        """Inverse of ``to_array``; raises EntropyError on a malformed table."""
        return cls(np.asarray(arr))

    def to_array(self) -> np.ndarray:
        return self.freqs.copy()

    def bits(self) -> np.ndarray:
        """Ideal code length of each symbol in bits, ``[K]`` float64."""
        return self.total_bits - np.log2(self.freqs.astype(np.float64))

    def model(self):
        """The constriction model reproducing this table exactly (see module docstring)."""
        if self._model is None:
            import constriction

            scale = 1 << (PRECISION - self.total_bits)
            w = (self.freqs.astype(np.int64) * scale - 1).astype(np.float64)
            self._model = constriction.stream.model.Categorical(w, perfect=False)
        return self._model

    def __eq__(self, other):
        return isinstance(other, StaticPrior) and np.array_equal(self.freqs, other.freqs)

    def __repr__(self):
        return f"StaticPrior(K={self.K}, total_bits={self.total_bits})"


def uniform_prior(K: int, total_bits: int = PRECISION) -> StaticPrior:
    """Uniform table over K symbols (exactly uniform when K is a power of two)."""
    if not 1 <= K <= MAX_SYMBOLS or K > 1 << total_bits:
        raise EntropyError(f"cannot build a uniform prior over {K} symbols with {total_bits} bits")
    T = 1 << total_bits
    f = np.full(K, T // K, dtype=np.int64)
    f[: T % K] += 1
    return StaticPrior(f, total_bits)


def priors_digest(priors: Sequence[StaticPrior]) -> str:
    """sha256 hex of the tables (count, then per table K, total_bits, freqs as u32 LE)."""
    h = hashlib.sha256(len(priors).to_bytes(4, "little"))
    for p in priors:
        h.update(p.K.to_bytes(4, "little") + p.total_bits.to_bytes(1, "little"))
        h.update(p.freqs.astype("<u4").tobytes())
    return h.hexdigest()


def _check(symbols: np.ndarray, priors: Sequence[StaticPrior]) -> np.ndarray:
    s = np.asarray(symbols)
    if s.ndim != 2:
        raise EntropyError(f"symbols must be [n_q, F], got shape {s.shape}")
    if s.shape[0] != len(priors):
        raise EntropyError(f"{s.shape[0]} rows of symbols but {len(priors)} priors")
    if s.size and not np.issubdtype(s.dtype, np.integer):
        raise EntropyError(f"symbols must be integers, got {s.dtype}")
    for q, p in enumerate(priors):
        row = s[q]
        if row.size and (row.min() < 0 or row.max() >= p.K):
            raise EntropyError(f"row {q}: symbol out of range 0..{p.K - 1}")
    return s


def encode_rows(rows: Sequence[np.ndarray], priors: Sequence[StaticPrior]) -> bytes:
    """Range-code rows of any lengths one after the other (row i with ``priors[i]``; symbols
    checked by the caller) into one stream; rows that are empty or whose prior has one symbol
    add nothing. Big-endian words, trailing zero bytes dropped (the decoder reads zeros)."""
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    for row, p in zip(rows, priors):
        if p.K > 1 and len(row):
            enc.encode(np.ascontiguousarray(row, dtype=np.int32), p.model())
    return enc.get_compressed().astype(">u4").tobytes().rstrip(b"\0")


class RowDecoder:
    """Inverse of ``encode_rows`` when each row's length is known only after the rows before
    it are decoded (the ``.ae2`` per-frame stage counts come first): ``read`` row by row,
    then ``finish`` checks that the data are exactly what ``encode_rows`` makes of them."""

    def __init__(self, data: bytes):
        import constriction

        self.data = bytes(data)
        if self.data.endswith(b"\0"):
            raise EntropyError("entropy-coded block is corrupt (trailing zero byte)")
        words = np.frombuffer(self.data + b"\0" * (-len(self.data) % 4), dtype=">u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self.rows: list[np.ndarray] = []
        self.priors: list[StaticPrior] = []

    def read(self, prior: StaticPrior, n: int) -> np.ndarray:
        """The next ``n`` symbols, coded with ``prior`` (int64 ``[n]``)."""
        out = np.zeros(int(n), dtype=np.int64)
        if prior.K > 1 and n:
            try:
                out[:] = self._dec.decode(prior.model(), int(n))
            except Exception as e:  # constriction reports bad streams with assorted exception types
                raise EntropyError(f"entropy-coded block does not decode: {e}") from None
        self.rows.append(out)
        self.priors.append(prior)
        return out

    def finish(self) -> None:
        if encode_rows(self.rows, self.priors) != self.data:
            raise EntropyError("entropy-coded block is corrupt (does not re-encode to the same bytes)")


def encode_symbols(symbols: np.ndarray, priors: Sequence[StaticPrior]) -> bytes:
    """Range-code ``symbols [n_q, F]`` (row q with ``priors[q]``) to bytes."""
    return encode_rows(list(_check(symbols, priors)), priors)


def decode_symbols(data: bytes, priors: Sequence[StaticPrior], n_frames: int) -> np.ndarray:
    """Inverse of ``encode_symbols``: returns int64 ``[len(priors), n_frames]``.

    Raises ``EntropyError`` when ``data`` is not exactly what ``encode_symbols`` would produce
    for some symbols (wrong length, garbage, trailing bytes, other priors).
    """
    n_frames = int(n_frames)
    if n_frames < 0:
        raise EntropyError("n_frames must be >= 0")
    dec = RowDecoder(data)
    out = np.stack([dec.read(p, n_frames) for p in priors]) if priors else np.zeros((0, n_frames), np.int64)
    dec.finish()
    return out
