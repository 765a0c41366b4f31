"""Format version 3's values: 8-bit log-probability codes on a fixed grid (docs/FORMAT.md).

A stored value is a code c ∈ 0…255 and means log p̂ = −c · step, a log-probability relative
to the token's logsumexp: no per-token minimum or maximum is stored. The nucleus uses
NUCLEUS_STEP (1/16 nat: p down to e^−15.94 ≈ 1.2e−7), the tail TAIL_STEP (1/8 nat: down to
e^−31.9 ≈ 1.4e−14).

Rounding is randomized so that what is linear in the stored values is unbiased:
- nucleus: c is ⌊x⌋ or ⌈x⌉ (x = −log p / step), ⌈x⌉ with the probability that makes
  E[p̂] = p, so every nucleus term Σ p̂_i f(i) of a loss is unbiased;
- tail: the reader weighs sample i by w(log p̂_i, κ̂) = p̂_i / q(p̂_i, κ̂), q the inclusion
  probability under the stored threshold κ̂ (float32), and the code is drawn between its two
  neighbours so that E[ŵ_i] = w(log p_i, κ̂); the tail estimate Σ ŵ_i f(i) stays unbiased. The
  rule is computed on G = w / e^κ̂ − 1 (`weight_excess`), which keeps its precision where w is
  nearly flat (p ≪ e^κ̂), so p, not the rounding of κ, decides the code everywhere.
Left: clamping (a value below the grid's end is stored at the end: a nucleus probability
< 1.2e−7 is read as 1.2e−7, a tail sample below e^−31.9 as one at the end), and κ̂ = κ
rounded to float32, which moves every weight by a relative ≤ 2^−24·|κ| ≈ 6e−8·|κ|. Terms that
are not linear in p̂ or ŵ (log p̂, p̂ log p̂, 1/q̂, p̂^(1/T)) are biased by O(step²); no reading
of a two-point code removes that for every p, and `logit_lineage.kd` subtracts its mean
(docs/FORMAT.md bounds what remains).

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


def _p_rule(lp: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: float) -> np.ndarray:
    """P(hi) that makes E[p̂] = p: (p̂(lo) − p) / (p̂(lo) − p̂(hi)); 0 where lo = hi (clamped)."""
    p_lo, p_hi = np.exp(decode(lo, step)), np.exp(decode(hi, step))
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(p_lo > p_hi, (p_lo - np.exp(lp)) / (p_lo - p_hi), 0.0)
    return np.clip(np.nan_to_num(up, nan=0.0), 0.0, 1.0)


def nucleus_candidates(logprobs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower code, upper code, P(upper)) of nucleus log-probabilities (≤ 0): E[p̂] = p."""
    lp = np.asarray(logprobs, dtype=np.float64)
    lo, hi = _neighbours(lp, NUCLEUS_STEP)
    return lo, hi, _p_rule(lp, lo, hi, NUCLEUS_STEP)


def encode_nucleus(logprobs, rng: np.random.Generator) -> np.ndarray:
    """uint8 codes of nucleus log-probabilities (≤ 0) with E[exp(decode(c))] = p."""
    lo, hi, up = nucleus_candidates(logprobs)
    u = rng.random(lo.shape)
    return np.where(u < up, hi, lo).astype(np.uint8)


def weight_excess(r) -> np.ndarray:
    """G(r) = r / (1 − e^−r) − 1 (float64), so that w = e^κ̂ (1 + G(e^(log p − κ̂))): the weight
    above its floor e^κ̂, with full relative precision down to r → 0 (G ≈ r/2 + r²/12)."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        direct = r / -np.expm1(-r) - 1.0
    return np.where(r < 1e-4, r / 2 + r * r / 12, direct)


def tail_candidates(logprobs, counts, threshold_stored) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower code, upper code, P(upper)) of tail samples: E[w(decode(c), κ̂)] = w(log p, κ̂),
    κ̂ the stored (float32) threshold per token, `counts` samples each.

    The rule is written in G = w / e^κ̂ − 1 (`weight_excess`), which keeps its precision
    where w is nearly flat (p ≪ e^κ̂: w ≈ e^κ̂ (1 + p e^−κ̂ / 2)), so the code there is set
    by p, as everywhere (there the rule is E[p̂] = p to first order). κ̂ = −inf: w = p.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    kappa_hat = np.repeat(np.asarray(threshold_stored, dtype=np.float64), np.asarray(counts, dtype=np.int64))
    lo, hi = _neighbours(lp, TAIL_STEP)
    up_p = _p_rule(lp, lo, hi, TAIL_STEP)
    with np.errstate(over="ignore", invalid="ignore"):
        g = [weight_excess(np.exp(x - kappa_hat)) for x in (lp, decode(lo, TAIL_STEP), decode(hi, TAIL_STEP))]
        up = np.where(g[1] > g[2], (g[1] - g[0]) / (g[1] - g[2]), np.nan)
    finite = np.isfinite(kappa_hat) & np.isfinite(up)
    return lo, hi, np.where(finite, np.clip(np.nan_to_num(up), 0.0, 1.0), up_p)


def encode_tail(logprobs, counts, threshold_stored, rng: np.random.Generator) -> np.ndarray:
    """uint8 codes of tail samples' log-probabilities with E[w(decode(c), κ̂)] = w(log p, κ̂)
    (`threshold_stored`: the float32 κ̂ per token that readers will see, `counts` samples each)."""
    lo, hi, up = tail_candidates(logprobs, counts, threshold_stored)
    u = rng.random(lo.shape)
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
