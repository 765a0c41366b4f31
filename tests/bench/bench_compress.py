"""Benchmark 1: compressing teacher logits, this project's method vs the original one.

Per workload (rows of logits at one vocabulary size, as many rows as
extraction hands `compress_rows` at once for that vocabulary):
- ours: `compress_rows` with the extraction's block noise (two-stage top-k
  nucleus; Gumbel-top-k tail drawn as an exponential race on one float64
  cumsum, ~2(k+1) random numbers per row);
- baseline: `seed_reference.seed_compress_block` (float64 copy, softmax,
  full-vocabulary sort, cumsum, mask, Gumbel over the whole vocabulary, top-k),
  drawing its own [rows, vocab] float64 uniforms as the original does
  (the users' original compression code, tests/bench/seed_reference.py).
Throughput: interleaved rounds, medians. Peak extra memory: each method once in
a fresh process (benchlib.peak_rss_delta). Agreement: both methods on the same
rows (baseline with the format's inclusive nucleus rule, docs/FORMAT.md) must give the same
logsumexp and nucleus sets, and tails of the same size (the tail samples are
random draws of the same law, Gumbel-top-k over the tail: that is tested in
tests/teacher/test_compress.py, with the same checks shown to reject another law).
"""
from __future__ import annotations

import numpy as np
import torch

from benchlib import Result, fmt_bytes, fmt_rate, paired_times, peak_rss_delta
from context import CAP, SAMPLED_N, SEED, TOP_P, VOCABS, BenchContext
from logit_lineage.teacher.compress import BlockNoise, Workspace, compress_rows
from seed_reference import seed_compress, seed_compress_block, seed_uniforms
from workloads import embed_rows, nucleus_sizes, rows_per_chunk, zipf_logits

BENCH = "1 compression"
TARGET_VOCAB = 151_936


def project_fn(logits: torch.Tensor, example_index: int = 0):
    """A closure doing what compress_batch does for one chunk (block noise + compress_rows)."""
    ws = Workspace()
    gen = torch.Generator()
    m = logits.shape[0]

    def call():
        noise = BlockNoise.for_example(SEED, example_index, m, gen, logits.device)
        return compress_rows(logits, noise, top_p=TOP_P, cap=CAP, k=SAMPLED_N, workspace=ws)

    return call


def seed_fn(logits: torch.Tensor):
    gen = torch.Generator().manual_seed(SEED)
    return lambda: seed_compress_block(logits, gen, top_p=TOP_P, cap=CAP, k=SAMPLED_N)


def agreement(logits: torch.Tensor, max_rows: int = 32) -> dict:
    """Both methods on the first `max_rows` rows; counts of rows where they agree."""
    logits = logits[:max_rows]
    m, vocab = logits.shape
    gen = torch.Generator().manual_seed(SEED)
    ours = compress_rows(logits, BlockNoise.for_example(SEED, 0, m, gen), top_p=TOP_P, cap=CAP, k=SAMPLED_N)
    ref = seed_compress(logits, seed_uniforms(m, vocab, gen), top_p=TOP_P, cap=CAP, k=SAMPLED_N, inclusive=True)
    nucleus_ok = tail_ok = 0
    for r in range(m):
        n = int(ours.top_counts[r])
        if n == int(ref.top_counts[r]) and set(ours.top_ids[r, :n].tolist()) == set(ref.top_ids[r, :n].tolist()):
            nucleus_ok += 1
        if int(ours.sampled_counts[r]) == min(SAMPLED_N, vocab - n) and \
                bool(torch.isfinite(ours.threshold[r])) == bool(torch.isfinite(ref.threshold[r])):
            tail_ok += 1
    return {
        "rows": m,
        "nucleus_ok": nucleus_ok,
        "tail_ok": tail_ok,
        "lse_max_abs_diff": float((ours.logsumexp - ref.logsumexp).abs().max()),
    }


def workloads(ctx: BenchContext) -> list[tuple[str, torch.Tensor]]:
    out = []
    for i, vocab in enumerate(VOCABS):
        out.append((f"zipf V={vocab:,}", zipf_logits(rows_per_chunk(vocab), vocab, seed=SEED + i)))
    demo_vocab = int(ctx.demo[0].get_output_embeddings().weight.shape[0])
    out.append((f"demo teacher V={demo_vocab:,}", ctx.demo_logits(rows_per_chunk(demo_vocab))))
    real = ctx.demo_logits(rows_per_chunk(TARGET_VOCAB))
    out.append((f"demo rows in V={TARGET_VOCAB:,}", embed_rows(real, TARGET_VOCAB, seed=SEED)))
    return out


def run(ctx: BenchContext) -> list[Result]:
    results = []
    for name, logits in workloads(ctx):
        m, vocab = logits.shape
        ctx.log(f"[bench 1] {name}: {m} rows")
        sizes = nucleus_sizes(logits, TOP_P, CAP)
        shape = (f"{m} rows/call; nucleus size mean {sizes.mean():.1f}, median {np.median(sizes):.0f}, "
                 f"{(sizes >= CAP).mean():.0%} capped at {CAP}")
        at_target = vocab == TARGET_VOCAB

        agree = agreement(logits, max_rows=m if vocab < 10_000 else 32)
        n = agree["rows"]
        ok = agree["nucleus_ok"] == agree["tail_ok"] == n and agree["lse_max_abs_diff"] < 1e-4
        results.append(Result(
            BENCH, name, "agreement (tail: same law)",
            f"nucleus {agree['nucleus_ok']}/{n} rows equal, tail size {agree['tail_ok']}/{n}",
            "seed method, spec nucleus rule", f"|Δlse| ≤ {agree['lse_max_abs_diff']:.1e}",
            "identical", ok))

        timing = paired_times(project_fn(logits), seed_fn(logits), ctx.repeats)
        speedup = timing.ratio_b_over_a
        results.append(Result(
            BENCH, name, "throughput", fmt_rate(m / timing.a_med), fmt_rate(m / timing.b_med),
            f"{speedup:.2f}× faster", "≥ 3× at V=151,936" if at_target else "",
            (speedup >= 3.0) if at_target else None, shape))

        path = ctx.tmp / f"logits-{vocab}-{m}.npy"
        np.save(path, logits.numpy())
        spec = {"logits": str(path), "top_p": TOP_P, "cap": CAP, "k": SAMPLED_N, "seed": SEED,
                "threads": torch.get_num_threads()}
        mem_ours = peak_rss_delta(dict(spec, method="project"))
        mem_seed = peak_rss_delta(dict(spec, method="seed"))
        path.unlink()
        frac = mem_ours / mem_seed
        results.append(Result(
            BENCH, name, "peak extra memory (RSS)", fmt_bytes(mem_ours), fmt_bytes(mem_seed), f"{frac:.2f}×",
            "≤ 0.5× at V=151,936" if at_target else "", (frac <= 0.5) if at_target else None,
            f"input rows {fmt_bytes(logits.numel() * 4)} not counted; "
            f"{mem_ours / logits.numel():.1f} vs {mem_seed / logits.numel():.1f} bytes per logit"))
    return results
