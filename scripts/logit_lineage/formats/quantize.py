"""uint16 per-row min/max quantization of logits.

A row's values v map to round((v - min) / (max - min) * 65535); min and max
are stored as float32 (the logits themselves are float32, so both are exact).
Dequantized values are within (max - min) / 65535 / 2 of the originals.
"""
from __future__ import annotations

import numpy as np

LEVELS = 65535


def _segment_ids(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.size), counts)


def quantize_rows(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize a flat array cut into rows of `counts` values each.

    Returns (uint16 codes, float32 row minima, float32 row maxima); an empty
    row gets min = max = 0.
    """
    values = np.asarray(values, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.int64)
    n_rows = counts.size
    mins = np.zeros(n_rows, dtype=np.float32)
    maxs = np.zeros(n_rows, dtype=np.float32)
    nonempty = counts > 0
    if values.size:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonempty]
        mins[nonempty] = np.minimum.reduceat(values, starts)
        maxs[nonempty] = np.maximum.reduceat(values, starts)
    seg = _segment_ids(counts)
    lo = mins[seg].astype(np.float64)
    span = maxs[seg].astype(np.float64) - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, (values.astype(np.float64) - lo) / span * LEVELS, 0.0)
    codes = np.clip(np.rint(scaled), 0, LEVELS).astype(np.uint16)
    return codes, mins, maxs


def dequantize_rows(codes: np.ndarray, counts: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> np.ndarray:
    """Inverse of quantize_rows, in float64."""
    seg = _segment_ids(np.asarray(counts, dtype=np.int64))
    lo = np.asarray(mins, dtype=np.float64)[seg]
    span = np.asarray(maxs, dtype=np.float64)[seg] - lo
    return lo + np.asarray(codes, dtype=np.float64) * (span / LEVELS)
