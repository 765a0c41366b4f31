"""Benchmark 10: the distillation chain on the real SmolLM2-135M teacher on CPU (bench_real_teacher.py)."""
import pytest

import bench_real_teacher

pytestmark = pytest.mark.bench


def test_real_teacher(bench_ctx):
    results = bench_real_teacher.run(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == 5
    rate = next(r for r in results if r.metric == "kept tokens/s")
    assert rate.met is not None  # the throughput row was measured
