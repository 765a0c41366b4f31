"""Fidelity of compressed logit records against the teacher's dense logits.

For one token, `token_metrics` compares the compressed record (nucleus N with
dequantized logits, tail samples S with the Gumbel-top-k threshold κ, stored
logsumexp) with the dense logits z of the same distribution:

- nucleus_mass = Σ_{i∈N} p_i and stored_mass = Σ_{i∈N∪S} p_i (true dense p);
- top1_agree: the record's first nucleus token is the dense argmax;
  top5_overlap: |dense top-5 ∩ record top-5| / 5, the record's ranking being
  its stored tokens by stored logit;
- max_logit_error = max_{i∈N∪S} |ẑ_i − z_i| (dequantization, plus any
  teacher-forward difference); logsumexp_error = |lse_stored − lse_dense|;
- kl = KL(p ‖ r) for the *reconstruction* r (see `reconstruct_logprobs`):
  stored tokens keep their stored probability p̂_i = exp(ẑ_i − lse_stored),
  and the remaining mass R = 1 − Σ_{N∪S} p̂_i is spread uniformly over the
  tokens the record does not name (R is floored at 1e-12 so r has full support,
  then r is renormalized). This is the maximum-entropy distribution consistent
  with the record; the importance weights are not used here because they put
  all tail mass on the sampled tokens, which gives zero probability to tokens
  the teacher can emit and an infinite KL; they are what the CE estimate uses;
- the estimated distillation loss: for a fixed student s, the cross-entropy
  H(p, s) = −Σ p_i log s_i is estimated from the record alone as
      Ĥ = −[Σ_{i∈N} p̂_i log s_i + Σ_{i∈S} (p̂_i / q_i) log s_i],
      q_i = 1 − exp(−exp(log p̂_i − κ))       (κ = −∞: q_i = 1),
  the priority-sampling (Horvitz–Thompson) estimator, unbiased for the tail
  part over the sampler's randomness; compared with the exact H from z. Two
  students: the dense teacher at a temperature (default 2) and the uniform one.
  The nucleus-only estimate (nucleus renormalized, tail ignored) is reported
  beside it to show what the tail samples buy.
"""
from __future__ import annotations

import math

import numpy as np

from logit_lineage.formats.tail import estimate_expectation as _estimate
from logit_lineage.formats.tail import tail_weights

MASS_FLOOR = 1e-12
STUDENTS = ("teacher_t", "uniform")
QUANTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def estimate_expectation(nucleus_logprobs, nucleus_values, sampled_logprobs, sampled_values, threshold) -> float:
    """Σ_i p_i f_i from a record: nucleus exactly + importance-weighted tail samples."""
    return _estimate(np.exp(np.asarray(nucleus_logprobs, dtype=np.float64)), nucleus_values,
                     tail_weights(sampled_logprobs, threshold), sampled_values)


def nucleus_only_expectation(nucleus_logprobs, nucleus_values) -> float:
    """Σ_N p_i f_i / Σ_N p_i: the estimate that ignores the tail (biased)."""
    p = np.exp(np.asarray(nucleus_logprobs, dtype=np.float64))
    return float(np.dot(p, nucleus_values) / p.sum())


def top_k_only_expectation(logprobs_full, values_full, k: int) -> float:
    """The top-k tokens renormalized (a plain top-k distillation target; biased)."""
    lp = np.asarray(logprobs_full, dtype=np.float64)
    ids = np.argsort(-lp, kind="stable")[:k]
    p = np.exp(lp[ids])
    return float(np.dot(p, np.asarray(values_full)[ids]) / p.sum())


def reconstruct_logprobs(vocab: int, token: dict) -> np.ndarray:
    """log r over the vocabulary: stored tokens' stored probabilities, the rest uniform."""
    ids = np.concatenate([token["top_ids"], token["sampled_ids"]]).astype(np.int64)
    lps = np.concatenate([token["top_logprobs"], token["sampled_logprobs"]]).astype(np.float64)
    stored = np.exp(lps)
    unseen = vocab - len(ids)
    rest = max(1.0 - float(stored.sum()), MASS_FLOOR) if unseen else 0.0
    r = np.full(vocab, rest / unseen if unseen else 0.0, dtype=np.float64)
    r[ids] = stored
    r /= r.sum()
    with np.errstate(divide="ignore"):
        return np.log(r)


def token_metrics(dense_logits, token: dict, *, temperature: float = 2.0) -> dict:
    """Every fidelity measure of one compressed token against its dense logits."""
    z = np.asarray(dense_logits, dtype=np.float64)
    vocab = z.shape[-1]
    lp = log_softmax(z)
    p = np.exp(lp)
    top_ids = np.asarray(token["top_ids"], dtype=np.int64)
    s_ids = np.asarray(token["sampled_ids"], dtype=np.int64)
    stored_ids = np.concatenate([top_ids, s_ids])
    stored_logits = np.concatenate([token["top_logits"], token["sampled_logits"]]).astype(np.float64)
    lse_dense = float(z.max() + math.log(np.exp(z - z.max()).sum()))

    dense_top5 = np.argsort(-z, kind="stable")[:5]
    record_rank = stored_ids[np.argsort(-stored_logits, kind="stable")][:5]
    log_r = reconstruct_logprobs(vocab, token)
    kl = float(np.sum(np.where(p > 0, p * (lp - log_r), 0.0)))

    out = {
        "nucleus_size": int(len(top_ids)),
        "sampled_count": int(len(s_ids)),
        "nucleus_mass": float(p[top_ids].sum()),
        "stored_mass": float(p[np.unique(stored_ids)].sum()),
        "top1_agree": bool(len(top_ids) > 0 and int(top_ids[0]) == int(np.argmax(z))),
        "top5_overlap": len(set(dense_top5.tolist()) & set(record_rank.tolist())) / min(5, vocab),
        "kl": max(kl, 0.0),
        "max_logit_error": float(np.abs(stored_logits - z[stored_ids]).max()) if len(stored_ids) else 0.0,
        "logsumexp_error": abs(float(token["logsumexp"]) - lse_dense),
        "mass_estimate": estimate_expectation(token["top_logprobs"], np.ones(len(top_ids)),
                                              token["sampled_logprobs"], np.ones(len(s_ids)), token["threshold"]),
    }
    students = {
        "teacher_t": log_softmax(z / temperature),
        "uniform": np.full(vocab, -math.log(vocab)),
    }
    for name, log_s in students.items():
        f = -log_s
        exact = float(np.dot(p, f))
        est = estimate_expectation(token["top_logprobs"], f[top_ids], token["sampled_logprobs"], f[s_ids],
                                   token["threshold"])
        nuc = nucleus_only_expectation(token["top_logprobs"], f[top_ids]) if len(top_ids) else float("nan")
        out[f"ce_{name}_exact"] = exact
        out[f"ce_{name}_estimate"] = est
        out[f"ce_{name}_rel_error"] = (est - exact) / exact
        out[f"ce_{name}_nucleus_only_rel_error"] = (nuc - exact) / exact
    return out


def describe(values) -> dict:
    """mean, std, min, quantiles, max of one metric (booleans as fractions)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0}
    out = {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min())}
    out.update({name: float(np.percentile(v, q)) for name, q in QUANTILES.items()})
    out["max"] = float(v.max())
    return out


def summarize_tokens(columns: dict[str, list]) -> dict:
    """Per-metric statistics, plus |relative error| statistics for the CE estimates."""
    summary = {name: describe(vals) for name, vals in columns.items()}
    for name, vals in columns.items():
        if name.endswith("rel_error"):
            summary[f"abs_{name}"] = describe(np.abs(np.asarray(vals, dtype=np.float64)))
    return summary


def headline(summary: dict, sizes: dict) -> dict:
    """The table the report leads with."""
    def get(metric, stat):
        return summary.get(metric, {}).get(stat)

    out = {
        "tokens": get("kl", "n"),
        "mean_nucleus_mass": get("nucleus_mass", "mean"),
        "mean_stored_mass": get("stored_mass", "mean"),
        "top1_agreement": get("top1_agree", "mean"),
        "top5_overlap": get("top5_overlap", "mean"),
        "kl_mean": get("kl", "mean"),
        "kl_p99": get("kl", "p99"),
        "max_logit_error": get("max_logit_error", "max"),
    }
    for s in STUDENTS:
        out[f"ce_{s}_rel_error_mean"] = get(f"ce_{s}_rel_error", "mean")
        out[f"ce_{s}_abs_rel_error_mean"] = get(f"abs_ce_{s}_rel_error", "mean")
        out[f"ce_{s}_abs_rel_error_p99"] = get(f"abs_ce_{s}_rel_error", "p99")
        out[f"ce_{s}_nucleus_only_abs_rel_error_mean"] = get(f"abs_ce_{s}_nucleus_only_rel_error", "mean")
    out.update(sizes)
    return out
