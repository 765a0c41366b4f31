"""Benchmark 3: padding waste of token-budget batches over sorted shards vs fixed-size batches.

Padding waste = 1 − real tokens / computed positions, where a batch computes
batch size × its longest row (teacher.batching.padding_fraction).
- ours: the workflow's path — kept rows sorted by (length, index), cut into
  shards by `balanced_cuts`, each shard batched by `plan_batches` with a token
  budget;
- baseline: the same rows in dataset order, fixed-size batches, the batch size
  being the mean batch size of our plan (so both make the same number of
  forward calls).
Workloads: the demo dataset's real lengths (compute_lengths.py's output) with
the default budget 4,096 and 4 shards; a long-tailed synthetic length
distribution (log-normal, median 400, σ 1, clipped to [8, 32,768]; 50,000 rows)
with a GPU-sized budget of 65,536 and 16 shards.
"""
from __future__ import annotations

import numpy as np

from benchlib import Result
from context import BenchContext
from logit_lineage.teacher.batching import balanced_cuts, padding_fraction, plan_batches
from workloads import lognormal_lengths

BENCH = "3 padding waste"


def compare(lengths_in_order: np.ndarray, n_shards: int, budget: int, max_batch: int = 256) -> dict:
    order = np.lexsort((np.arange(len(lengths_in_order)), lengths_in_order))
    sorted_lengths = lengths_in_order[order]
    computed_ours = real = 0
    n_batches = 0
    for part in balanced_cuts(sorted_lengths, n_shards):
        shard = sorted_lengths[part]
        batches = plan_batches(shard, budget, max_batch)
        n_batches += len(batches)
        computed_ours += sum(len(b) * int(shard[b].max()) for b in batches if len(b))
        real += int(shard.sum())
    ours = 1.0 - real / computed_ours
    size = max(1, round(len(lengths_in_order) / n_batches))
    fixed = [np.arange(i, min(i + size, len(lengths_in_order))) for i in range(0, len(lengths_in_order), size)]
    base = padding_fraction(lengths_in_order, fixed)
    return {"ours": ours, "base": base, "batches": n_batches, "fixed_size": size, "rows": len(lengths_in_order)}


def _result(case: str, c: dict, budget: int, shards: int) -> Result:
    ratio = c["base"] / c["ours"] if c["ours"] > 0 else float("inf")
    return Result(BENCH, case, "padding / computed positions", f"{c['ours']:.2%}", f"{c['base']:.2%}",
                  f"{ratio:,.0f}× less waste" if np.isfinite(ratio) else "no waste", "≤ 5%", c["ours"] <= 0.05,
                  f"{c['rows']:,} rows, budget {budget:,}, {shards} shards → {c['batches']:,} batches; "
                  f"baseline: unsorted, fixed batches of {c['fixed_size']}")


def run(ctx: BenchContext) -> list[Result]:
    lengths = ctx.demo_lengths
    kept = lengths[lengths["skip_reason"].isna()].sort_values("index")["num_tokens"].to_numpy().astype(np.int64)
    out = [_result("demo dataset lengths", compare(kept, 4, 4096), 4096, 4)]
    synthetic = lognormal_lengths(50_000, seed=1337)
    out.append(_result("long-tailed synthetic", compare(synthetic, 16, 65_536), 65_536, 16))
    return out
