"""Benchmark 9: where a compressed shard's bytes go, per column (after zstd).

For each workload the shard is written exactly as extraction writes it (format version 2,
zstd level 3, byte-stream-split lists); each column's compressed size is summed over the
row groups from the parquet footer and divided by the stored tokens. The remainder (footer,
metadata, page headers) is listed as `(file overhead)`. Workloads:
- Zipf-like rows at V = 151,936 (bench_kd_loader.write_shard: 16,384 tokens);
- a real teacher's shard when BENCH_REAL_SHARD names one (e.g. the SmolLM2 example's
  results/distill/logits/shard-00000.parquet), else the demo teacher's default-run shard
  when BENCH_DEMO_SHARD names one.
Each workload is also re-encoded as format version 3 (`formats.logits.transcode`: the same
records, 8-bit codes), so the two layouts are compared column by column on the same tokens.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from bench_kd_loader import write_shard
from benchlib import Result
from context import BenchContext
from logit_lineage.formats.logits import transcode

BENCH = "9 bytes per column"


def column_bytes(path) -> tuple[dict[str, int], int]:
    """{column: compressed bytes} summed over row groups, and the stored token count."""
    f = pq.ParquetFile(path)
    sizes: dict[str, int] = {}
    for g in range(f.metadata.num_row_groups):
        rg = f.metadata.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            name = col.path_in_schema.split(".")[0]
            sizes[name] = sizes.get(name, 0) + col.total_compressed_size
    tokens = int(pq.read_table(path, columns=["num_tokens"]).column(0).to_numpy().sum())
    sizes["(file overhead)"] = Path(path).stat().st_size - sum(sizes.values())
    return sizes, tokens


def breakdown(case: str, path) -> list[Result]:
    sizes, tokens = column_bytes(path)
    total = Path(path).stat().st_size
    out = [Result(BENCH, case, "bytes per token, whole file", f"{total / tokens:,.1f} B", "", "", "", None,
                  f"{tokens:,} tokens, {total:,} bytes")]
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        out.append(Result(BENCH, f"{case}: {name}", "bytes per token", f"{size / tokens:,.2f} B", "",
                          f"{100 * size / total:.1f} % of the file", "", None, ""))
    return out


def run(ctx: BenchContext) -> list[Result]:
    path = ctx.tmp / "columns-zipf.parquet"
    write_shard(path)
    cases = [("Zipf rows, V=151,936", path)]
    for env, case in (("BENCH_REAL_SHARD", "real teacher shard"), ("BENCH_DEMO_SHARD", "demo teacher shard")):
        if os.environ.get(env):
            cases.append((f"{case} ({Path(os.environ[env]).name})", Path(os.environ[env])))
    out = []
    for k, (case, src) in enumerate(cases):
        out += breakdown(f"{case}, format 2", src)
        v3 = ctx.tmp / f"columns-{k}-v3.parquet"
        transcode(src, v3, 3)
        out += breakdown(f"{case}, format 3 (same records)", v3)
    return out
