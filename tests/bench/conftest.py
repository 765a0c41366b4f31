"""Benchmarks share one context (demo assets built once) and print one table at the end.

Environment knobs (pytest -m bench -s tests/bench):
  BENCH_TEACHER / BENCH_DATASET  reuse a demo teacher dir and its conversations parquet
  BENCH_REPEATS                  timed interleaved rounds per comparison (default 3)
  BENCH_SHARDS                   shard counts of the dry-run benchmark (default 100,1000,10000)
  BENCH_MARKDOWN                 also write the table as markdown to this path
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from benchlib import format_table, machine_info, markdown_table  # noqa: E402
from context import BenchContext  # noqa: E402


@pytest.fixture(scope="session")
def bench_ctx():
    ctx = BenchContext(
        repeats=int(os.environ.get("BENCH_REPEATS", "3")),
        teacher=os.environ.get("BENCH_TEACHER") or None,
        dataset=os.environ.get("BENCH_DATASET") or None,
        shard_counts=tuple(int(x) for x in os.environ.get("BENCH_SHARDS", "100,1000,10000").split(",")),
    )
    machine = machine_info()
    yield ctx
    if not ctx.results:
        return
    text = format_table(ctx.results, machine)
    print("\n\n" + text)
    for block in ctx.details:
        print("\n" + block)
    target = os.environ.get("BENCH_MARKDOWN")
    if target:
        md = markdown_table(ctx.results, machine, "make bench  (= .venv/bin/python -m pytest -m bench -s tests/bench)")
        if ctx.details:
            md += "\n" + "\n\n".join(f"```\n{d}\n```" for d in ctx.details) + "\n"
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(md)
        print(f"markdown table → {target}")

