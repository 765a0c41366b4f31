"""Benchmark 8: the reader's per-token decoding, before and after linear offsets.

`DecodedExample.token(j)` used to rebuild both offset arrays (a cumsum over the whole
example) on every call, so walking an example's T tokens cost O(T²); the offsets are now
computed once per example. Workload: one shard of Zipf-like rows at V = 151,936 at the
default parameters (bench_kd_loader.write_shard), 16 examples of 1,024 stored tokens.
- before: the old `token()` body (offsets recomputed per call), as it stood;
- after: `DecodedExample.token` as shipped.
Both walk every token of every example (`shard.example(i)` decodes the row first, the
same in both); median over interleaved rounds. Also: whole-row decoding alone.
"""
from __future__ import annotations

import time

import numpy as np

from bench_kd_loader import write_shard
from benchlib import Result, fmt_rate, paired_times
from context import BenchContext
from logit_lineage.formats.logits import DecodedExample, LogitsShard

BENCH = "8 reader decode"
EXAMPLES, TOKENS = 16, 1024


def old_token(ex: DecodedExample, j: int) -> dict:
    """`DecodedExample.token` before this change: both offset arrays rebuilt per call."""
    t = np.concatenate([[0], np.cumsum(ex.top_counts.astype(np.int64))])
    s = np.concatenate([[0], np.cumsum(ex.sampled_counts.astype(np.int64))])
    lse = ex.logsumexp[j]
    top_logits = ex.top_logits[t[j] : t[j + 1]]
    sampled_logits = ex.sampled_logits[s[j] : s[j + 1]]
    return {"position": int(ex.positions[j]), "token_id": int(ex.token_ids[j]), "logsumexp": float(lse),
            "threshold": float(ex.threshold[j]), "top_ids": ex.top_ids[t[j] : t[j + 1]], "top_logits": top_logits,
            "top_logprobs": top_logits - lse, "sampled_ids": ex.sampled_ids[s[j] : s[j + 1]],
            "sampled_logits": sampled_logits, "sampled_logprobs": sampled_logits - lse}


def walk(shard: LogitsShard, token) -> int:
    n = 0
    for i in range(len(shard)):
        ex = shard.example(i)
        for j in range(ex.num_tokens):
            token(ex, j)
        n += ex.num_tokens
    return n


def run(ctx: BenchContext) -> list[Result]:
    path = ctx.tmp / "reader-bench.parquet"
    tokens = write_shard(path, n_examples=EXAMPLES, n_tokens=TOKENS)
    shard = LogitsShard(path)
    for i in range(len(shard)):  # the new and old bodies agree
        ex = shard.example(i)
        for j in (0, ex.num_tokens // 2, ex.num_tokens - 1):
            a, b = DecodedExample.token(ex, j), old_token(ex, j)
            assert all(np.array_equal(a[k], b[k]) for k in a)
    paired = paired_times(lambda: walk(shard, old_token), lambda: walk(shard, DecodedExample.token), ctx.repeats)
    before, after = tokens / paired.a_med, tokens / paired.b_med
    t0 = time.perf_counter()
    for i in range(len(shard)):
        shard.example(i)
    rows = tokens / (time.perf_counter() - t0)
    return [
        Result(BENCH, f"per-token walk, {EXAMPLES} × {TOKENS:,} tokens, V=151,936", "tokens/s",
               fmt_rate(after), fmt_rate(before), f"{after / before:.1f}× faster", "", None,
               "before = offsets recomputed per token (O(T²) per example); after = once per example"),
        Result(BENCH, "whole-row decode (shard.example)", "tokens/s", fmt_rate(rows), "", "", "", None,
               "ids unpacked and logits dequantized per example, unchanged"),
    ]
