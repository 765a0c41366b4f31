"""Benchmark 4: extraction throughput vs a bare teacher forward on CPU (bench_extraction.py)."""
import pytest

import bench_extraction
from benchlib import missed

pytestmark = pytest.mark.bench


def test_extraction_overhead(bench_ctx):
    results = bench_extraction.run(bench_ctx)
    bench_ctx.add(*results)
    assert results[0].met is not None
    assert not missed(results), missed(results)
