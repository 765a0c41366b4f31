"""Token ids as uint16 low bits plus packed high bits.

A token id needs `16 + high_bits` bits; `high_bits` follows from the vocabulary
size (0 for vocab ≤ 65,536, 2 for ≤ 262,144 as in the original compression code, 3 for ≤ 524,288, …)
and is recorded in the file's metadata. High bits are packed LSB-first into
bytes, value after value, so for 2 bits the layout equals the original code's (4 ids per
byte, the first id in the lowest two bits). An id the layout cannot hold is an
error, never a wrap.
"""
from __future__ import annotations

import numpy as np

from logit_lineage.common.errors import LineageError

MAX_HIGH_BITS = 16  # ids up to 2**32 - 1


def high_bits_for_vocab(vocab_size: int) -> int:
    """Number of high bits needed for ids in [0, vocab_size)."""
    if vocab_size < 1:
        raise LineageError(f"vocab_size must be ≥ 1, got {vocab_size}")
    bits = max(0, (vocab_size - 1).bit_length() - 16)
    if bits > MAX_HIGH_BITS:
        raise LineageError(
            f"vocab_size {vocab_size} needs {16 + bits}-bit ids; the format holds at most "
            f"{16 + MAX_HIGH_BITS} bits"
        )
    return bits


def packed_high_size(n: int, high_bits: int) -> int:
    return (n * high_bits + 7) // 8


def pack_indices(ids: np.ndarray, high_bits: int) -> tuple[np.ndarray, bytes]:
    """Split ids into (uint16 low bits, packed high-bit bytes)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or int(ids.max()) >= 1 << (16 + high_bits)):
        bad = int(ids.max()) if ids.min() >= 0 else int(ids.min())
        raise LineageError(
            f"token id {bad} does not fit {16 + high_bits}-bit ids (index_high_bits={high_bits})"
        )
    ids = ids.astype(np.uint64, copy=False)
    low = (ids & np.uint64(0xFFFF)).astype(np.uint16)
    if high_bits == 0 or ids.size == 0:
        return low, b""
    high = ids >> np.uint64(16)
    shifts = np.arange(high_bits, dtype=np.uint64)
    bits = ((high[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return low, np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def unpack_indices(low: np.ndarray, packed: bytes, high_bits: int) -> np.ndarray:
    """Rebuild int64 ids from low bits and packed high bits."""
    low = np.asarray(low, dtype=np.uint16)
    n = low.size
    if len(packed) != packed_high_size(n, high_bits):
        raise LineageError(
            f"packed high bits hold {len(packed)} bytes, expected "
            f"{packed_high_size(n, high_bits)} for {n} ids at {high_bits} bits"
        )
    ids = low.astype(np.int64)
    if high_bits == 0 or n == 0:
        return ids
    if 8 % high_bits == 0:  # whole ids per byte (1, 2, 4, 8 bits): shift and mask, no bit array
        per_byte = 8 // high_bits
        shifts = np.arange(per_byte, dtype=np.uint8) * np.uint8(high_bits)
        b = np.frombuffer(packed, dtype=np.uint8)
        high = ((b[:, None] >> shifts) & np.uint8((1 << high_bits) - 1)).reshape(-1)[:n]
        return ids | (high.astype(np.int64) << 16)
    bits = np.unpackbits(
        np.frombuffer(packed, dtype=np.uint8), count=n * high_bits, bitorder="little"
    ).reshape(n, high_bits)
    high = (bits.astype(np.int64) << np.arange(high_bits, dtype=np.int64)).sum(axis=1)
    return ids | (high << 16)
