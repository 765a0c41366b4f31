"""Benchmark 2: bytes per token of the compressed parquet vs dense bf16 (bench_bytes.py)."""
import pytest

import bench_bytes
from benchlib import missed

pytestmark = pytest.mark.bench


def test_bytes_per_token(bench_ctx):
    results = bench_bytes.run(bench_ctx)
    bench_ctx.add(*results)
    assert any(r.met is not None for r in results)
    assert not missed(results), missed(results)
