"""Benchmark 9: bytes per token per column after zstd (bench_columns.py)."""
import pytest

import bench_columns

pytestmark = pytest.mark.bench


def test_bytes_per_column(bench_ctx):
    results = bench_columns.run(bench_ctx)
    bench_ctx.add(*results)
    whole = [r for r in results if r.metric == "bytes per token, whole file"]
    assert whole and all(float(r.ours.split()[0].replace(",", "")) > 0 for r in whole)
