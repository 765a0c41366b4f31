"""Exact expectation of a KD loss over format version 3's randomized rounding (no Monte Carlo).

Every stored value has two candidate codes (`formats.codes.nucleus_candidates`,
`tail_candidates`) and a known probability of the upper one. For an estimator that is a
sum of per-entry terms (every estimator at T = 1 but topk), the per-row value and the
gradient of the row's logits are, by linearity, E[L] = L(all lower) + Σ_j u_j (L(slot j
upper) − L(all lower)): one loss evaluation per entry slot (slot j flipped in every token
at once; rows do not interact). Used by tests/test_format_v3.py and the figures of
docs/RESULTS.md."""
from __future__ import annotations

import numpy as np
import torch

from logit_lineage.distill.compress import BlockNoise, compress_rows
from logit_lineage.formats import codes
from logit_lineage.formats.logits import DecodedExample
from logit_lineage.kd import dense_kd_loss, kd_loss
from logit_lineage.kd.online import compressed_records, extraction_defaults
from logit_lineage.kd.targets import collate_targets, example_targets


def compressed_record(teacher: torch.Tensor, seed: int = 0):
    """One example's record of teacher rows [N, V] at the extraction defaults."""
    d = extraction_defaults()
    n = teacher.shape[0]
    units = [(0, b // 64, min(64, n - b)) for b in range(0, n, 64)]
    c = compress_rows(teacher.float(), BlockNoise(seed, units, torch.Generator()), top_p=d["top_p"],
                      cap=d["top_p_max_elements"], k=d["sampled_n"])
    return compressed_records([c], [np.arange(1, n + 1)])[0]


def candidates(rec):
    """Per stored value: lower code, upper code, P(upper) — nucleus then tail — and the
    per-token float32 logsumexp / threshold the reader sees."""
    lse = np.asarray(rec.logsumexp, np.float64)
    kappa_hat = np.asarray(rec.threshold, np.float64).astype(np.float32).astype(np.float64)
    n_lp = np.minimum(rec.top_logits.astype(np.float64) - np.repeat(lse, rec.top_counts), 0.0)
    s_lp = np.minimum(rec.sampled_logits.astype(np.float64) - np.repeat(lse, rec.sampled_counts), 0.0)
    return codes.nucleus_candidates(n_lp), codes.tail_candidates(s_lp, rec.sampled_counts, kappa_hat), \
        lse.astype(np.float32).astype(np.float64), kappa_hat


def _ranks(counts):
    counts = np.asarray(counts, np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def targets_for(rec, n_codes, s_codes, lse32, kappa_hat, grid=True):
    ex = DecodedExample(
        index=rec.index, positions=np.asarray(rec.positions, np.int64), token_ids=np.asarray(rec.token_ids),
        logsumexp=lse32, threshold=kappa_hat, top_counts=np.asarray(rec.top_counts, np.int64),
        top_ids=np.asarray(rec.top_ids, np.int64),
        top_logits=np.repeat(lse32, rec.top_counts) + codes.decode(n_codes, codes.NUCLEUS_STEP),
        sampled_counts=np.asarray(rec.sampled_counts, np.int64), sampled_ids=np.asarray(rec.sampled_ids, np.int64),
        sampled_logits=np.repeat(lse32, rec.sampled_counts) + codes.decode(s_codes, codes.TAIL_STEP),
        grid=(codes.NUCLEUS_STEP, codes.TAIL_STEP) if grid else None)
    return collate_targets([example_targets(ex)])


def exact_targets(rec):
    """The same sample with its exact values (what the rounding is measured against)."""
    ex = DecodedExample(
        index=rec.index, positions=np.asarray(rec.positions, np.int64), token_ids=np.asarray(rec.token_ids),
        logsumexp=np.asarray(rec.logsumexp, np.float64), threshold=np.asarray(rec.threshold, np.float64),
        top_counts=np.asarray(rec.top_counts, np.int64), top_ids=np.asarray(rec.top_ids, np.int64),
        top_logits=rec.top_logits.astype(np.float64), sampled_counts=np.asarray(rec.sampled_counts, np.int64),
        sampled_ids=np.asarray(rec.sampled_ids, np.int64), sampled_logits=rec.sampled_logits.astype(np.float64))
    return collate_targets([example_targets(ex)])


def _value_grad(student, targets, **kw):
    z = student.detach().clone().requires_grad_()
    v = kd_loss(z, targets, reduction="none", **kw)
    v.sum().backward()
    return v.detach().double(), z.grad.double()


def expected_loss(student, rec, grid=True, **kw):
    """(E[per-row value], E[gradient]) over the two candidate codes of every stored value."""
    (n_lo, n_hi, n_up), (s_lo, s_hi, s_up), lse32, kappa_hat = candidates(rec)
    base_v, base_g = _value_grad(student, targets_for(rec, n_lo, s_lo, lse32, kappa_hat, grid), **kw)
    ev, eg = base_v.clone(), base_g.clone()
    n_rank, s_rank = _ranks(rec.top_counts), _ranks(rec.sampled_counts)
    n_tok = np.repeat(np.arange(len(rec.top_counts)), rec.top_counts)
    s_tok = np.repeat(np.arange(len(rec.sampled_counts)), rec.sampled_counts)
    for part, rank, tok, up in (("n", n_rank, n_tok, n_up), ("s", s_rank, s_tok, s_up)):
        for j in range(int(rank.max(initial=-1)) + 1):
            flip = rank == j
            if part == "n":
                t = targets_for(rec, np.where(flip, n_hi, n_lo), s_lo, lse32, kappa_hat, grid)
            else:
                t = targets_for(rec, n_lo, np.where(flip, s_hi, s_lo), lse32, kappa_hat, grid)
            v, g = _value_grad(student, t, **kw)
            u = np.zeros(len(rec.top_counts))
            u[tok[flip]] = up[flip]
            u = torch.from_numpy(u)
            ev += u * (v - base_v)
            eg += u[:, None] * (g - base_g)
    return ev, eg


def rounding_shift(teacher, student, rec, *, grid=True, kind="forward_kl", estimator="unbiased",
                   temperature=1.0) -> dict:
    """The rounding's exact shift of the batch-mean value and of the gradient, relative to the
    dense value and the dense gradient's norm (grad_own: relative to the norm of the same
    estimator's gradient on the exact values); `grid=False` reads the codes uncorrected."""
    kw = dict(kind=kind, estimator=estimator, temperature=temperature)
    ev, eg = expected_loss(student, rec, grid=grid, **kw)
    xv, xg = _value_grad(student, exact_targets(rec), **kw)
    z = student.detach().clone().requires_grad_()
    dense = dense_kd_loss(z, teacher, kind=kind, temperature=temperature, reduction="sum")
    dense.backward()
    return {"value": float((ev - xv).sum() / dense.detach().double()),
            "grad": float((eg - xg).norm() / z.grad.double().norm()),
            "grad_own": float((eg - xg).norm() / xg.norm()),  # relative to the sparse estimate's own gradient
            "dense": float(dense.detach()) / teacher.shape[0]}


def real_teacher_rows() -> torch.Tensor:
    """SmolLM2-135M-Instruct's rows at the assistant tokens of tests/test_real_teacher.py's chats."""
    from logit_lineage.distill.teacher import load_teacher, load_tokenizer
    from test_real_teacher import CONVERSATIONS, SPEC, TEMPLATE, reference

    tok = load_tokenizer(SPEC, None, TEMPLATE)
    model = load_teacher(SPEC, revision=None, dtype="float32", device="cpu")
    rows = []
    for conv in CONVERSATIONS:
        ids, mask, logits = reference(model, tok, conv)
        rows.append(torch.from_numpy(logits[:-1][mask[1:]]).float())
    return torch.cat(rows)


def main() -> None:
    """Print the rounding shift (uncorrected reading / corrected) per kind × estimator on real rows:
    `PYTHONPATH=scripts:tests .venv/bin/python tests/v3_exact.py [--all]` (--all adds topk and T = 2,
    where the sum over slots is the first-order term: those estimators are not sums of per-value terms)."""
    import sys

    z = real_teacher_rows()
    rec = compressed_record(z, seed=5)
    gen = torch.Generator().manual_seed(0)
    students = {"near": z + torch.randn(z.shape, generator=gen),
                "flat": 0.5 * z + 2 * torch.randn(z.shape, generator=gen)}
    cases = [("forward_kl", "unbiased", 1.0), ("forward_kl", "unbiased_exact_mass", 1.0), ("ce", "unbiased", 1.0),
             ("reverse_kl", "unbiased", 1.0)]
    if "--all" in sys.argv:
        cases += [("forward_kl", "topk", 1.0), ("reverse_kl", "topk", 1.0), ("forward_kl", "unbiased", 2.0),
                  ("reverse_kl", "unbiased", 2.0)]
    print(f"{len(z)} rows, V = {z.shape[1]}; shift of value / gradient relative to the dense value / gradient norm")
    for name, s in students.items():
        for kind, est, t in cases:
            cols = []
            for grid in (False, True):
                r = rounding_shift(z, s, rec, grid=grid, kind=kind, estimator=est, temperature=t)
                cols.append(f"{100 * r['value']:+.4f} % / {100 * r['grad']:.4f} %")
            print(f"{name:5s} {kind:10s} {est:19s} T={t:g}  uncorrected {cols[0]:22s} corrected {cols[1]:22s}"
                  f"  dense {r['dense']:.4f}", flush=True)


if __name__ == "__main__":
    main()
