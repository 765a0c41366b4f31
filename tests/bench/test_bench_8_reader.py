"""Benchmark 8: the reader's per-token decoding before and after linear offsets (bench_reader.py)."""
import pytest

import bench_reader

pytestmark = pytest.mark.bench


def test_reader_decode_speed(bench_ctx):
    results = bench_reader.run(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == 2
