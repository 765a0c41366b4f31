"""Reader API for compressed logits: per-token distributions,
unbiased tail weights and nucleus statistics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from logit_lineage.formats.logits import DecodedExample, LogitsShard
from logit_lineage.formats.tail import estimate_expectation as _estimate
from logit_lineage.formats.tail import inclusion_probabilities, tail_weights

__all__ = ["TokenDistribution", "estimate_expectation", "inclusion_probabilities", "nucleus_stats", "tail_weights",
           "token_distributions"]


@dataclass
class TokenDistribution:
    """What the file says about one position's next-token distribution."""

    position: int
    token_id: int
    top_ids: np.ndarray
    top_probs: np.ndarray
    sampled_ids: np.ndarray
    sampled_probs: np.ndarray
    tail_weights: np.ndarray  # p_i / q_i: Σ w_i f(i) estimates Σ_tail p_i f(i) unbiasedly

    @property
    def nucleus_mass(self) -> float:
        return float(self.top_probs.sum())

    @property
    def token_prob(self) -> float | None:
        """Probability of the actual token, if it is stored (nucleus or sample)."""
        for ids, probs in ((self.top_ids, self.top_probs), (self.sampled_ids, self.sampled_probs)):
            hit = np.nonzero(ids == self.token_id)[0]
            if hit.size:
                return float(probs[hit[0]])
        return None


def token_distributions(example: DecodedExample) -> list[TokenDistribution]:
    out = []
    for j in range(example.num_tokens):
        t = example.token(j)
        sampled_lp = t["sampled_logprobs"]
        out.append(TokenDistribution(
            position=t["position"], token_id=t["token_id"], top_ids=t["top_ids"],
            top_probs=np.exp(t["top_logprobs"]), sampled_ids=t["sampled_ids"], sampled_probs=np.exp(sampled_lp),
            tail_weights=tail_weights(sampled_lp, t["threshold"]),
        ))
    return out


def estimate_expectation(dist: TokenDistribution, values: np.ndarray) -> float:
    """Unbiased estimate of E_p[f] from nucleus (exact) + importance-weighted tail samples.

    `values` is f over the whole vocabulary.
    """
    return _estimate(dist.top_probs, values[dist.top_ids], dist.tail_weights, values[dist.sampled_ids])


def nucleus_stats(shard: LogitsShard) -> dict:
    """Nucleus size and stored-mass statistics over a whole shard."""
    counts, masses = [], []
    for ex in shard:
        offs = np.concatenate([[0], np.cumsum(ex.top_counts)])
        probs = np.exp(ex.top_logits - np.repeat(ex.logsumexp, ex.top_counts))
        counts.append(ex.top_counts)
        masses.append(np.add.reduceat(probs, offs[:-1]) if probs.size else np.zeros(0))
    counts = np.concatenate(counts) if counts else np.zeros(0)
    masses = np.concatenate(masses) if masses else np.zeros(0)
    if counts.size == 0:
        return {"tokens": 0}
    cap = int(shard.params["top_p_max_elements"])
    return {
        "tokens": int(counts.size),
        "nucleus_size_mean": float(counts.mean()),
        "nucleus_size_median": float(np.median(counts)),
        "nucleus_size_p99": float(np.percentile(counts, 99)),
        "capped_fraction": float((counts >= cap).mean()),
        "nucleus_mass_mean": float(masses.mean()),
        "nucleus_mass_min": float(masses.min()),
        "histogram": {str(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True))},
    }
