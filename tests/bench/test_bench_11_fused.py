"""Benchmark 11: the fused-linear sparse KD loss at Qwen2.5-0.5B's head size (bench_fused.py)."""
import pytest

import bench_fused
from benchlib import missed

pytestmark = pytest.mark.bench


def test_fused_kd_loss_memory_and_time(bench_ctx):
    results = bench_fused.run(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == 3 and all(r.met is not None for r in results)
    assert not missed(results), missed(results)
