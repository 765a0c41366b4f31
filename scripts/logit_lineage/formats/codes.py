"""Format version 3's values: 8-bit log-probability codes on a fixed grid with subtractive
dither (docs/FORMAT.md).

A stored value is a code c ∈ 0…255 for a log-probability ℓ = log p relative to the token's
logsumexp. The nucleus uses NUCLEUS_STEP h = 1/16 nat, the tail TAIL_STEP h = 1/8 nat; with
x = clip(−ℓ / h, 0, 255) (the grid's range: p down to e^−15.94 ≈ 1.2e−7 in the nucleus,
e^−31.9 ≈ 1.4e−14 in the tail):

    encode: c = ⌊x + u⌋,  decode: ℓ̂ = −(c + 1/2 − u)·h,

with u ∈ [0, 1) a dither that writer and reader both compute from (seed, example index,
token position, part, vocabulary id) by a counter-based hash (`dither`): nothing about it
is stored, and it does not depend on the order in which values are stored (the tail is stored
sorted by code). Subtractive dither (Schuchman 1964; Gray & Stockham, "Dithered quantizers",
IEEE Trans. Inf. Theory 39(3), 1993): ℓ̂ − ℓ is uniform on [−h/2, h/2) and independent of ℓ,
so for every smooth ψ, E[ψ(ℓ̂)] is ψ averaged over a step-wide window, known in closed form:
E[e^(bℓ̂)] = e^(bℓ)·S(b), S(b) = sinh(bh/2)/(bh/2). `logit_lineage.kd`'s losses read every
term through that (docs/KD.md): exactly unbiased for the nucleus' p, log p, p log p, p^(1/T),
to O(h⁴) for the tail weights, which depend on p and the threshold.

The rounding rule is recorded in the shard's metadata (ROUNDING_RULE); readers refuse
another. Left: clamping (x > 255 is stored at 255: a nucleus probability below 1.2e−7, a tail
sample below e^−31.9), and κ̂ = κ rounded to float32 (every weight moves by a relative
≤ 2^−24·|κ|).
"""
from __future__ import annotations

import numpy as np

NUCLEUS_STEP = 1.0 / 16.0
TAIL_STEP = 1.0 / 8.0
MAX_CODE = 255
ROUNDING_RULE = "subtractive_dither_v1"
DITHER_STREAM = 0x76335F6469746872  # "v3_dithr": keeps the dither apart from the sampler's draws
PART_NUCLEUS, PART_TAIL = 1, 2
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def dither(seed: int, example_index: int, positions, ids, part: int) -> np.ndarray:
    """u ∈ [0, 1) (float64, 53 bits) per value: a hash of (seed, example index, token position,
    part — PART_NUCLEUS or PART_TAIL —, vocabulary id). `positions` and `ids` are per value."""
    pos = np.asarray(positions, dtype=np.int64).astype(np.uint64)
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(pos.shape, DITHER_STREAM, dtype=np.uint64)
        for v in (np.uint64(int(seed) & (2**64 - 1)), np.uint64(int(example_index) & (2**64 - 1)),
                  np.uint64(part), pos, ids):
            h = _mix(h + _GOLDEN + v)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def encode(logprobs, u, step: float) -> np.ndarray:
    """uint8 codes ⌊x + u⌋ of log-probabilities (≤ 0), x = clip(−log p / step, 0, MAX_CODE)."""
    x = -np.asarray(logprobs, dtype=np.float64) / step
    x = np.clip(np.nan_to_num(x, nan=MAX_CODE, posinf=MAX_CODE), 0.0, MAX_CODE)
    return np.minimum(np.floor(x + np.asarray(u, dtype=np.float64)), MAX_CODE).astype(np.uint8)


def decode(codes, u, step: float) -> np.ndarray:
    """Log-probabilities ℓ̂ = −(c + 1/2 − u)·step (relative to the logsumexp, float64): ℓ̂ − ℓ is
    uniform on [−step/2, step/2) for values within the grid."""
    return -(np.asarray(codes, dtype=np.float64) + 0.5 - np.asarray(u, dtype=np.float64)) * step


def delta_encode(codes, counts) -> np.ndarray:
    """Within each token's run, each code minus the one before it (mod 256); the first as is."""
    c = np.asarray(codes, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if c.size == 0:
        return np.zeros(0, np.uint8)
    prev = np.concatenate([[0], c[:-1]])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
    prev[starts] = 0
    return ((c - prev) % 256).astype(np.uint8)


def delta_decode(deltas, counts) -> np.ndarray:
    """Inverse of delta_encode: int64 codes."""
    d = np.asarray(deltas, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if d.size == 0:
        return np.zeros(0, np.int64)
    total = np.cumsum(d)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    before = np.concatenate([[0], total[:-1]])[starts[counts > 0]]
    return (total - np.repeat(before, counts[counts > 0])) % 256
