#!/usr/bin/env python
"""Run every benchmark of the hot paths and print one table (docs/BENCHMARKS.md explains it).

    .venv/bin/python tests/bench/run_all.py [--markdown docs/bench_table.md] [--only 1,3]

Each figure is measured side by side with its anchor in this one run (the
project's method vs the original one, token-budget vs fixed batches, compressed
extraction vs a bare forward, 1k vs 10k shards) and given as a ratio, with
medians over interleaved repeats, under the machine it ran on.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import bench_bytes
import bench_columns
import bench_compress
import bench_dryrun
import bench_extraction
import bench_fused
import bench_kd_loader
import bench_padding
import bench_reader
import bench_real_teacher
from benchlib import format_table, machine_info, markdown_table
from context import BenchContext

HERE = Path(__file__).resolve().parent

BENCHMARKS = {
    "1": ("compression: project vs seed method", bench_compress.run),
    "2": ("bytes per token vs dense bf16", bench_bytes.run),
    "3": ("padding waste: token budget over sorted shards vs fixed batches", bench_padding.run),
    "4": ("extraction throughput vs bare forward (CPU)", bench_extraction.run),
    "5": ("snakemake dry run vs shard count", bench_dryrun.run),
    "5b": ("snakemake dry run vs a bare Snakefile with the same jobs", bench_dryrun.run_against_bare),
    "7": ("KD loader: decode + collate throughput", bench_kd_loader.run),
    "8": ("reader per-token decoding before/after linear offsets", bench_reader.run),
    "9": ("bytes per token per column", bench_columns.run),
    "10": ("the distillation chain on the real SmolLM2-135M teacher (CPU)", bench_real_teacher.run),
    "11": ("fused-linear KD loss vs full logits + kd_loss (CPU, V=151,936)", bench_fused.run),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma list of benchmark numbers (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="timed interleaved rounds per comparison")
    ap.add_argument("--teacher", default=None, help="reuse this demo teacher dir (with --dataset)")
    ap.add_argument("--dataset", default=None, help="conversations parquet the teacher was built on")
    ap.add_argument("--shards", default="100,1000,10000", help="shard counts for the dry-run benchmark")
    ap.add_argument("--dryrun-repeats", type=int, default=2)
    ap.add_argument("--bare-shards", default="1000,10000", help="shard counts for benchmark 5b")
    ap.add_argument("--dryrun-repeats-large", type=int, default=1, help="5b's rounds at 10,000 shards and over")
    ap.add_argument("--markdown", default=None, help="also write the table as markdown here")
    args = ap.parse_args(argv)

    ctx = BenchContext(repeats=args.repeats, teacher=args.teacher, dataset=args.dataset,
                       shard_counts=tuple(int(x) for x in args.shards.split(",")),
                       dryrun_repeats=args.dryrun_repeats,
                       bare_counts=tuple(int(x) for x in args.bare_shards.split(",")),
                       dryrun_repeats_large=args.dryrun_repeats_large)
    machine = machine_info()
    started = time.monotonic()
    failed = []
    for key in [k.strip() for k in args.only.split(",") if k.strip()]:
        title, fn = BENCHMARKS[key]
        t0 = time.monotonic()
        ctx.log(f"[bench {key}] {title} …")
        try:
            ctx.add(*fn(ctx))
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(f"benchmark {key} failed: {type(exc).__name__}: {exc}")
            ctx.log(failed[-1])
        ctx.log(f"[bench {key}] done in {time.monotonic() - t0:.0f} s")
    total = time.monotonic() - started

    print()
    print(format_table(ctx.results, machine))
    for block in ctx.details:
        print()
        print(block)
    print(f"\ntotal benchmark time {total:.0f} s")
    for msg in failed:
        print(msg)
    if args.markdown:
        command = "python tests/bench/run_all.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        text = markdown_table(ctx.results, machine, command.strip())
        if ctx.details:
            text += "\n" + "\n\n".join(f"```\n{d}\n```" for d in ctx.details) + "\n"
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
        print(f"markdown table → {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
