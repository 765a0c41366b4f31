"""Format version 3's values: 8-bit log-probability codes on a fixed grid (docs/FORMAT.md).

A stored value is a code c ∈ 0…255 and means log p̂ = −c · step, a log-probability relative
to the token's logsumexp: no per-token minimum or maximum is stored. The nucleus uses
NUCLEUS_STEP (1/16 nat: p down to e^−15.94 ≈ 1.2e−7), the tail TAIL_STEP (1/8 nat: down to
e^−31.9 ≈ 1.4e−14).

Rounding is randomized so that what a reader computes from the codes is unbiased:
- nucleus: c is ⌊x⌋ or ⌈x⌉ (x = −log p / step), ⌈x⌉ with the probability that makes
  E[p̂] = p, so every nucleus term Σ p̂_i f(i) of a loss is unbiased;
- tail: the reader weighs sample i by w(log p̂_i, κ̂) = p̂_i / q(p̂_i, κ̂), q the inclusion
  probability under the stored threshold κ̂ (float32). w is monotone in log p̂, and the code
  is drawn between its two neighbours so that E[ŵ_i] = w(log p_i, κ), the exact weight
  under the exact threshold; the tail estimate Σ ŵ_i f(i) stays unbiased.
Clamping is the only bias left: a value below the grid's end is stored at the end (a
nucleus probability < 1.2e−7 is read as 1.2e−7; a tail sample below e^−31.9 is weighed as
one at the end), and where w is flat to float64 precision between two codes (a sample far
below the threshold, where w ≈ e^κ) the nearer code is kept; the threshold's float32
rounding moves every weight by a relative ≤ 6e−8·|κ|. docs/FORMAT.md bounds these.

The random numbers come from one generator per example, seeded by (extraction seed,
example index): a shard's bytes do not depend on batching.
"""
from __future__ import annotations

import numpy as np

NUCLEUS_STEP = 1.0 / 16.0
TAIL_STEP = 1.0 / 8.0
MAX_CODE = 255
ROUNDING_STREAM = 0x76335F726F756E64  # "v3_round": keeps these draws apart from the sampler's


def rounding_rng(seed: int, example_index: int) -> np.random.Generator:
    """The generator of one example's randomized rounding."""
    return np.random.default_rng([ROUNDING_STREAM, int(seed) & (2**64 - 1), int(example_index) & (2**64 - 1)])


def log_inclusion(logprobs, threshold) -> np.ndarray:
    """log q = log(1 − exp(−exp(log p − κ))) (float64), stable at both ends: −expm1 keeps
    full precision for tiny exp(log p − κ), and below exp's range (log p − κ < −700)
    log q = log p − κ. κ = −inf gives log q = 0 (q = 1: the whole tail was kept)."""
    d = np.asarray(logprobs, dtype=np.float64) - np.asarray(threshold, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d < -700.0, d, np.log(-np.expm1(-np.exp(np.maximum(d, -700.0)))))


def tail_weights(logprobs, threshold) -> np.ndarray:
    """w = p / q for tail samples, computed as exp(log p − log q) (float64); ≈ e^κ for p ≪ e^κ."""
    lp = np.asarray(logprobs, dtype=np.float64)
    return np.exp(lp - log_inclusion(lp, threshold))


def decode(codes, step: float) -> np.ndarray:
    """Log-probabilities (relative to the logsumexp, float64) of codes."""
    return -np.asarray(codes, dtype=np.float64) * step


def _neighbours(logprobs: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower code, upper code) around x = −log p / step, clamped to 0…MAX_CODE."""
    x = -np.asarray(logprobs, dtype=np.float64) / step
    x = np.clip(np.nan_to_num(x, nan=MAX_CODE, posinf=MAX_CODE), 0.0, MAX_CODE)
    lo = np.floor(x)
    return lo, np.minimum(lo + 1, MAX_CODE)


def encode_nucleus(logprobs, rng: np.random.Generator) -> np.ndarray:
    """uint8 codes of nucleus log-probabilities (≤ 0) with E[exp(decode(c))] = p."""
    lp = np.asarray(logprobs, dtype=np.float64)
    lo, hi = _neighbours(lp, NUCLEUS_STEP)
    p_lo, p_hi = np.exp(decode(lo, NUCLEUS_STEP)), np.exp(decode(hi, NUCLEUS_STEP))
    with np.errstate(divide="ignore", invalid="ignore"):
        # P(hi) = (p_lo − p) / (p_lo − p_hi); clamped values sit on a grid point.
        up = np.where(p_lo > p_hi, (p_lo - np.exp(lp)) / (p_lo - p_hi), 0.0)
    up = np.clip(np.nan_to_num(up, nan=0.0), 0.0, 1.0)
    u = rng.random(lp.shape)
    return np.where(u < up, hi, lo).astype(np.uint8)


def encode_tail(logprobs, counts, threshold, threshold_stored, rng: np.random.Generator) -> np.ndarray:
    """uint8 codes of tail samples' log-probabilities with E[w(decode(c), κ̂)] = w(log p, κ).

    `threshold` is each token's exact κ (relative to the logsumexp, float64) and
    `threshold_stored` the value readers will see (float32); both per token, `counts`
    samples each.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    kappa = np.repeat(np.asarray(threshold, dtype=np.float64), counts)
    kappa_hat = np.repeat(np.asarray(threshold_stored, dtype=np.float64), counts)
    lo, hi = _neighbours(lp, TAIL_STEP)
    w = tail_weights(lp, kappa)
    w_lo = tail_weights(decode(lo, TAIL_STEP), kappa_hat)  # the larger weight (larger p)
    w_hi = tail_weights(decode(hi, TAIL_STEP), kappa_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(w_lo > w_hi, (w_lo - w) / (w_lo - w_hi), np.nan)
    # Flat between the two codes (to float64 precision): keep the nearer one.
    nearer = np.where(-lp / TAIL_STEP - lo > 0.5, 1.0, 0.0)
    up = np.where(np.isnan(up), nearer, np.clip(up, 0.0, 1.0))
    u = rng.random(lp.shape)
    return np.where(u < up, hi, lo).astype(np.uint8)


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
