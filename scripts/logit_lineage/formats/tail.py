"""The tail sample's weights and the expectation estimate: the one implementation that
training (`kd.targets`), the reader API (`formats.reader`) and the fidelity report
(`fidelity.fidelity`) all call.

A shard stores, per token, the nucleus N exactly and k tail tokens S drawn by Gumbel-top-k
with threshold κ (the (k+1)-th largest perturbed key). Tail token i is in the sample with
probability q_i = 1 − exp(−exp(log p_i − κ)) (priority sampling: N. Duffield, C. Lund,
M. Thorup, "Priority sampling for estimation of arbitrary subset sums", J. ACM 54(6), 2007;
the Gumbel-top-k form: W. Kool, H. van Hoof, M. Welling, "Stochastic Beams and Where to Find
Them", ICML 2019), so with w_i = p_i / q_i

    E_p[f] ≈ Σ_{i∈N} p_i f(i) + Σ_{i∈S} w_i f(i)

without bias. κ = −inf (the whole positive tail was kept) gives q = 1, w = p.
"""
from __future__ import annotations

import numpy as np


def log_inclusion(logprobs, threshold) -> np.ndarray:
    """log q = log(1 − exp(−exp(log p − κ))) (float64), stable at both ends: −expm1 keeps
    full precision for tiny exp(log p − κ), and below exp's range (log p − κ < −700)
    log q = log p − κ. κ = −inf gives log q = 0 (q = 1: the whole tail was kept)."""
    d = np.asarray(logprobs, dtype=np.float64) - np.asarray(threshold, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d < -700.0, d, np.log(-np.expm1(-np.exp(np.maximum(d, -700.0)))))


def inclusion_probabilities(logprobs, threshold) -> np.ndarray:
    """q_i = 1 − exp(−exp(log p_i − κ)): the chance that tail token i is in a Gumbel-top-k
    sample with threshold κ (float64)."""
    return np.exp(log_inclusion(logprobs, threshold))


def tail_weights(logprobs, threshold) -> np.ndarray:
    """Importance weights w = p / q of the tail samples, computed as exp(log p − log q)
    (float64); ≈ e^κ for p ≪ e^κ, and p where κ = −inf."""
    lp = np.asarray(logprobs, dtype=np.float64)
    return np.exp(lp - log_inclusion(lp, threshold))


def estimate_expectation(nucleus_probs, nucleus_values, weights, tail_values) -> float:
    """Σ_N p_i f(i) + Σ_S w_i f(i): E_p[f] from one token's nucleus (exact) and tail sample
    (importance-weighted), float64."""
    head = np.asarray(nucleus_probs, dtype=np.float64) @ np.asarray(nucleus_values, dtype=np.float64)
    tail = np.asarray(weights, dtype=np.float64) @ np.asarray(tail_values, dtype=np.float64)
    return float(head + tail)
