"""Benchmark 7: KD loader decode + collate throughput at V=151,936 (bench_kd_loader.py)."""
import pytest

import bench_kd_loader
from benchlib import missed

pytestmark = pytest.mark.bench


def test_kd_loader_throughput(bench_ctx):
    results = bench_kd_loader.run(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == 1 and results[0].met is not None
    assert not missed(results), missed(results)
