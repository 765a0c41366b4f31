"""Benchmark 1: compression, this project's method vs the original one (bench_compress.py)."""
import pytest

import bench_compress
from benchlib import missed

pytestmark = pytest.mark.bench


def test_compression_agrees_and_meets_targets(bench_ctx):
    results = bench_compress.run(bench_ctx)
    bench_ctx.add(*results)
    agreement = [r for r in results if r.metric.startswith("agreement")]
    assert agreement and all(r.met for r in agreement), missed(agreement)
    targeted = [r for r in results if r.met is not None and not r.metric.startswith("agreement")]
    assert len(targeted) == 4  # throughput and memory at V=151,936, two workloads
    assert not missed(results), missed(results)
