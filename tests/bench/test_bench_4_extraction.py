"""Benchmark 4: extraction throughput vs a bare teacher forward on CPU (bench_extraction.py)."""
import pytest

import bench_extraction
from benchlib import missed

pytestmark = pytest.mark.bench


def test_extraction_overhead(bench_ctx):
    results = bench_extraction.run(bench_ctx)
    bench_ctx.add(*results)
    real = [r for r in results if r.case.startswith("0.5B") and r.metric == "kept tokens/s"]
    assert len(real) == 1 and real[0].met is not None  # the target row was measured
    assert not missed(results), missed(results)
