"""Expectation of a KD loss over format version 3's subtractive dither, by quadrature (no Monte Carlo).

A stored value decodes to ℓ̂ = ℓ + h·e with e uniform on [−1/2, 1/2), independent across
values (`formats.codes`; ℓ the value clamped to the grid's range). The expectation over e of a
smooth function is a Gauss–Legendre sum (8 points; 4 slot by slot, exact to degree 7, whose
error on e^(bhe) is below (bh)⁸/8! ≈ 1e−12: float64 for the exponentials and polynomials the
losses read).

- Estimators that are sums of per-value terms (every estimator but topk at T = 1: the loss
  is linear in its weights α, γ and the entropy, each a sum of per-value readings) have
  E[L] = Σ_k ω_k L(every value at node k): the value and the gradient exactly.
- The others (T ≠ 1 and topk: ratios over a token's values, log Ẑ) by the first-order
  decomposition E[L] = L(0) + Σ_j (E_j[L] − L(0)), each slot j's dither integrated with the
  others at 0: exact but for the cross terms between two values of one token, which are
  O(h⁴) (products of two values' rounding variances).
Used by tests/formats/test_format_v3_exact.py and the figures of docs/RESULTS.md."""
from __future__ import annotations

import numpy as np
import torch

from logit_lineage.formats import codes
from logit_lineage.formats.logits import DecodedExample
from logit_lineage.kd import dense_kd_loss, kd_loss
from logit_lineage.kd.online import compressed_records, extraction_defaults
from logit_lineage.kd.targets import collate_targets, example_targets
from logit_lineage.teacher.compress import BlockNoise, compress_rows

NODES, WEIGHTS = np.polynomial.legendre.leggauss(8)
NODES, WEIGHTS = NODES / 2, WEIGHTS / 2  # on [−1/2, 1/2], summing to 1
SLOT_NODES, SLOT_WEIGHTS = (a / 2 for a in np.polynomial.legendre.leggauss(4))  # slot by slot: exact to degree 7


def compressed_record(teacher: torch.Tensor, seed: int = 0):
    """One example's record of teacher rows [N, V] at the extraction defaults."""
    d = extraction_defaults()
    n = teacher.shape[0]
    units = [(0, b // 64, min(64, n - b)) for b in range(0, n, 64)]
    c = compress_rows(teacher.float(), BlockNoise(seed, units, torch.Generator()), top_p=d["top_p"],
                      cap=d["top_p_max_elements"], k=d["sampled_n"])
    return compressed_records([c], [np.arange(1, n + 1)])[0]


def true_values(rec):
    """Per stored value the log-probability the dither centres on (nucleus, tail: clamped to the
    grid as the writer clamps) and the per-token float32 logsumexp / threshold the reader sees."""
    lse = np.asarray(rec.logsumexp, np.float64)
    kappa_hat = np.asarray(rec.threshold, np.float64).astype(np.float32).astype(np.float64)
    n_lp = np.minimum(rec.top_logits.astype(np.float64) - np.repeat(lse, rec.top_counts), 0.0)
    s_lp = np.minimum(rec.sampled_logits.astype(np.float64) - np.repeat(lse, rec.sampled_counts), 0.0)
    n_lp = np.maximum(n_lp, -codes.MAX_CODE * codes.NUCLEUS_STEP)
    s_lp = np.maximum(s_lp, -codes.MAX_CODE * codes.TAIL_STEP)
    return n_lp, s_lp, lse.astype(np.float32).astype(np.float64), kappa_hat


def _ranks(counts):
    counts = np.asarray(counts, np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def targets_for(rec, n_lp, s_lp, lse32, kappa_hat, grid=True):
    """Targets as the reader gives them for decoded log-probabilities n_lp, s_lp."""
    ex = DecodedExample(
        index=rec.index, positions=np.asarray(rec.positions, np.int64), token_ids=np.asarray(rec.token_ids),
        logsumexp=lse32, threshold=kappa_hat, top_counts=np.asarray(rec.top_counts, np.int64),
        top_ids=np.asarray(rec.top_ids, np.int64), top_logits=np.repeat(lse32, rec.top_counts) + n_lp,
        sampled_counts=np.asarray(rec.sampled_counts, np.int64), sampled_ids=np.asarray(rec.sampled_ids, np.int64),
        sampled_logits=np.repeat(lse32, rec.sampled_counts) + s_lp,
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


def separable(kind: str, estimator: str, temperature: float) -> bool:
    """Whether the loss is a sum of per-value readings (then node averaging is exact)."""
    return temperature == 1.0 and estimator != "topk"


def expected_loss(student, rec, grid=True, **kw):
    """(E[per-row value], E[gradient]) over the dither of every stored value."""
    n_lp, s_lp, lse32, kappa_hat = true_values(rec)
    hn, hs = codes.NUCLEUS_STEP, codes.TAIL_STEP
    if separable(kw["kind"], kw["estimator"], kw["temperature"]):
        ev = eg = 0.0
        for e, w in zip(NODES, WEIGHTS):
            v, g = _value_grad(student, targets_for(rec, n_lp + hn * e, s_lp + hs * e, lse32, kappa_hat, grid), **kw)
            ev, eg = ev + w * v, eg + w * g
        return ev, eg
    base_v, base_g = _value_grad(student, targets_for(rec, n_lp, s_lp, lse32, kappa_hat, grid), **kw)
    ev, eg = base_v.clone(), base_g.clone()
    parts = (("n", rec.top_counts),) if kw["estimator"] == "topk" else (("n", rec.top_counts), ("s", rec.sampled_counts))
    for part, counts in parts:  # topk reads the nucleus only: the tail's dither cannot move it
        rank = _ranks(counts)
        for j in range(int(rank.max(initial=-1)) + 1):
            flip = rank == j
            for e, w in zip(SLOT_NODES, SLOT_WEIGHTS):
                dn = np.where(flip, hn * e, 0.0) if part == "n" else 0.0
                ds = np.where(flip, hs * e, 0.0) if part == "s" else 0.0
                v, g = _value_grad(student, targets_for(rec, n_lp + dn, s_lp + ds, lse32, kappa_hat, grid), **kw)
                ev += w * (v - base_v)
                eg += w * (g - base_g)
    return ev, eg


def rounding_shift(teacher, student, rec, *, grid=True, kind="forward_kl", estimator="unbiased",
                   temperature=1.0) -> dict:
    """The rounding's shift of the batch-mean value and of the gradient, relative to the
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
    """SmolLM2-135M-Instruct's rows at the assistant tokens of tests/distill/test_real_teacher.py's chats."""
    from logit_lineage.teacher.load import load_teacher, load_tokenizer
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
    `PYTHONPATH=scripts:tests:tests/distill .venv/bin/python tests/formats/v3_exact.py [--all] [--every N]`
    (--all adds topk and T = 2, integrated slot by slot: those estimators are not sums of per-value terms;
    --every N keeps every N-th row, as the test does with 4)."""
    import sys

    every = int(sys.argv[sys.argv.index("--every") + 1]) if "--every" in sys.argv else 1
    z = real_teacher_rows()[::every].contiguous()
    rec = compressed_record(z, seed=5)
    gen = torch.Generator().manual_seed(0)
    students = {"near": z + torch.randn(z.shape, generator=gen),
                "flat": 0.5 * z + 2 * torch.randn(z.shape, generator=gen)}
    cases = [("forward_kl", "unbiased", 1.0), ("forward_kl", "unbiased_exact_mass", 1.0), ("ce", "unbiased", 1.0),
             ("reverse_kl", "unbiased", 1.0)]
    if "--all" in sys.argv:
        cases += [("forward_kl", "topk", 1.0), ("reverse_kl", "topk", 1.0), ("forward_kl", "unbiased", 2.0),
                  ("forward_kl", "unbiased_exact_mass", 2.0), ("ce", "unbiased", 2.0), ("reverse_kl", "unbiased", 2.0),
                  ("forward_kl", "topk", 2.0), ("reverse_kl", "topk", 2.0)]
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
