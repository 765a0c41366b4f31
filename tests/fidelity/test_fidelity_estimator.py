"""The estimated distillation loss: unbiased with importance-weighted tail samples,
biased with the nucleus or the top-k alone; and the per-token fidelity metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logit_lineage.fidelity.fidelity import (
    estimate_expectation,
    log_softmax,
    nucleus_only_expectation,
    reconstruct_logprobs,
    token_metrics,
    top_k_only_expectation,
)
from logit_lineage.teacher.compress import RandomNoise, compress_rows

VOCAB, TOP_P, CAP, K, SEEDS = 600, 0.9, 40, 8, 3000


def known_logits():
    """A fixed heavy-tailed distribution (Zipf-like with jitter), a real model's shape."""
    rng = np.random.default_rng(7)
    z = -1.7 * np.log(np.arange(1, VOCAB + 1)) + 0.3 * rng.standard_normal(VOCAB)
    return torch.tensor(rng.permutation(z), dtype=torch.float32)


def per_seed_records(z, seeds=SEEDS, top_p=TOP_P, cap=CAP, k=K):
    """compress_rows on the same distribution with fresh noise per seed (one row per seed)."""
    g = torch.Generator().manual_seed(1234)
    c = compress_rows(z.expand(seeds, -1).contiguous(), RandomNoise(seeds, g), top_p=top_p, cap=cap, k=k)
    records = []
    for r in range(seeds):
        tc, sc = int(c.top_counts[r]), int(c.sampled_counts[r])
        lse = float(c.logsumexp[r])
        records.append({
            "top_ids": c.top_ids[r, :tc].numpy(), "top_logprobs": c.top_logits[r, :tc].double().numpy() - lse,
            "sampled_ids": c.sampled_ids[r, :sc].numpy(),
            "sampled_logprobs": c.sampled_logits[r, :sc].double().numpy() - lse,
            "threshold": float(c.threshold[r]),
        })
    return records


@pytest.fixture(scope="module")
def setup():
    z = known_logits()
    return z, per_seed_records(z)


def students(z):
    zz = z.double().numpy()
    rng = np.random.default_rng(3)
    return {
        "teacher_T2": -log_softmax(zz / 2.0),
        "uniform": np.full(VOCAB, math.log(VOCAB)),
        "random_student": -log_softmax(rng.standard_normal(VOCAB) * 2.0),
    }


@pytest.mark.parametrize("student", ["teacher_T2", "uniform", "random_student"])
def test_tail_estimator_is_unbiased_and_nucleus_topk_are_not(setup, student):
    z, records = setup
    f = students(z)[student]
    lp = log_softmax(z.double().numpy())
    exact = float(np.dot(np.exp(lp), f))
    est = np.array([estimate_expectation(r["top_logprobs"], f[r["top_ids"]], r["sampled_logprobs"],
                                         f[r["sampled_ids"]], r["threshold"]) for r in records])
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert se > 0  # the sampled tail really varies from seed to seed
    assert abs(est.mean() - exact) < 3 * se, (est.mean(), exact, se)
    # the nucleus is the same for every seed: the nucleus-only estimate is one number
    r0 = records[0]
    nucleus_only = nucleus_only_expectation(r0["top_logprobs"], f[r0["top_ids"]])
    unnormalized = float(np.dot(np.exp(r0["top_logprobs"]), f[r0["top_ids"]]))
    top_k = top_k_only_expectation(lp, f, CAP)
    top_ids = np.argsort(-lp)[:CAP]
    top_k_unnormalized = float(np.dot(np.exp(lp[top_ids]), f[top_ids]))
    # renormalized estimates are exact for a constant f (uniform student): only the raw ones apply there
    biased = [unnormalized, top_k_unnormalized] + ([] if student == "uniform" else [nucleus_only, top_k])
    for value in biased:
        assert abs(value - exact) > 8 * se, (student, value, exact, se)
        assert abs(value - exact) / exact > 0.005


def test_whole_tail_taken_means_exact_estimate():
    """κ = −∞ (fewer tail tokens than k + 1): q = 1 and the estimate is exact."""
    z = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0])
    rec = per_seed_records(z, seeds=2, top_p=0.5, cap=3, k=10)[0]
    assert rec["threshold"] == -math.inf and len(rec["sampled_ids"]) + len(rec["top_ids"]) == 7
    f = np.arange(7, dtype=float) + 1.0
    exact = float(np.dot(np.exp(log_softmax(z.double().numpy())), f))
    assert estimate_expectation(rec["top_logprobs"], f[rec["top_ids"]], rec["sampled_logprobs"],
                                f[rec["sampled_ids"]], rec["threshold"]) == pytest.approx(exact, rel=1e-6)


def _token(record, z):
    lse = float(torch.logsumexp(z.double(), 0))
    return {**record, "top_logits": record["top_logprobs"] + lse, "sampled_logits": record["sampled_logprobs"] + lse,
            "logsumexp": lse}


def test_token_metrics_on_exact_record(setup):
    z, records = setup
    tok = _token(records[0], z)
    m = token_metrics(z.numpy(), tok, temperature=2.0)
    p = np.exp(log_softmax(z.double().numpy()))
    assert m["nucleus_mass"] == pytest.approx(p[tok["top_ids"]].sum())
    assert TOP_P <= m["nucleus_mass"] < m["stored_mass"] < 1
    assert m["top1_agree"] and m["top5_overlap"] == 1.0
    assert m["max_logit_error"] < 1e-5 and m["logsumexp_error"] < 1e-5
    assert 0 < m["kl"] < 0.5
    assert m["nucleus_size"] == len(tok["top_ids"]) and m["sampled_count"] == K
    assert m["ce_uniform_nucleus_only_rel_error"] == pytest.approx(0.0, abs=1e-12)


def test_reconstruction_is_a_distribution_and_kl_vanishes_when_all_is_stored():
    z = torch.tensor([2.0, 1.0, 0.0, -1.0])
    rec = per_seed_records(z, seeds=1, top_p=0.99, cap=4, k=0)[0]
    tok = _token(rec, z)
    log_r = reconstruct_logprobs(4, tok)
    assert np.exp(log_r).sum() == pytest.approx(1.0)
    assert token_metrics(z.numpy(), tok)["kl"] == pytest.approx(0.0, abs=1e-9)
    # a record naming only the argmax: the rest is spread uniformly, KL is finite and positive
    tok1 = {**tok, "top_ids": tok["top_ids"][:1], "top_logits": tok["top_logits"][:1],
            "top_logprobs": tok["top_logprobs"][:1]}
    r1 = np.exp(reconstruct_logprobs(4, tok1))
    assert r1[1:] == pytest.approx([r1[1]] * 3) and r1.sum() == pytest.approx(1.0)
    assert 0 < token_metrics(z.numpy(), tok1)["kl"] < math.inf


def test_dequantization_error_is_reported(setup):
    z, records = setup
    tok = _token(records[1], z)
    shifted = dict(tok, top_logits=tok["top_logits"] + np.where(np.arange(len(tok["top_ids"])) == 2, 0.01, 0.0))
    assert token_metrics(z.numpy(), shifted)["max_logit_error"] == pytest.approx(0.01, rel=1e-3)
