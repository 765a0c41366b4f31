"""Selective-classification metrics: group errors among accepted samples, risk-coverage, AURC."""
from __future__ import annotations

import numpy as np


def group_errors(correct: np.ndarray, accepted: np.ndarray, sample_groups: np.ndarray, n_groups: int,
                 smoothed: bool = False) -> np.ndarray:
    """err_k = P(y != h(x) | r(x) = 0, y in G_k) for a batch of rules.

    `correct`, `accepted`: [..., N] bool; `sample_groups`: [N] group of each true label.
    A group with no accepted sample counts as error 1: rejecting a whole group must not look
    like a perfect score on it. `smoothed` gives Laplace's (wrong + 1) / (accepted + 2)
    instead, for *choosing* among rules: a group error measured on a handful of accepted
    samples is mostly noise (0 of 1 wrong is not a perfect rule), and plain counts reward
    rules that keep only a few samples of a group.
    """
    onehot = np.eye(n_groups, dtype=np.float32)[sample_groups]  # [N, K]
    # float32 sums of 0/1 are exact up to 2^24 samples.
    n_acc = accepted.astype(np.float32) @ onehot  # [..., K]
    n_wrong = (accepted & ~correct).astype(np.float32) @ onehot
    if smoothed:
        return np.where(n_acc > 0, (n_wrong + 1.0) / (n_acc + 2.0), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(n_acc > 0, n_wrong / np.maximum(n_acc, 1), 1.0)
    return err


def summarize(correct: np.ndarray, accepted: np.ndarray, sample_groups: np.ndarray, n_groups: int) -> dict:
    """One rule's numbers on one set of samples."""
    errs = group_errors(correct, accepted, sample_groups, n_groups)
    n_acc = int(accepted.sum())
    return {
        "rejection_rate": float(1.0 - accepted.mean()),
        "group_errors": [float(e) for e in errs],
        "balanced_error": float(errs.mean()),
        "worst_group_error": float(errs.max()),
        "standard_error": float(((~correct) & accepted).sum() / n_acc) if n_acc else 1.0,
    }


def aurc(rates, errors) -> float:
    """Area under the risk-coverage curve, as the mean error over the rejection-rate range.

    Trapezoids over the given (rejection rate, error) points, divided by the width of the
    rate range, so a flat curve at e has AURC e whatever range is used.
    """
    rates = np.asarray(rates, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    order = np.argsort(rates)
    rates, errors = rates[order], errors[order]
    width = rates[-1] - rates[0]
    if rates.size < 2 or width <= 0:
        return float(errors.mean())
    return float(np.sum((errors[1:] + errors[:-1]) * np.diff(rates)) / 2.0 / width)
