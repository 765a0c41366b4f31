"""Benchmark 3: padding waste, token-budget batches over sorted shards vs fixed batches (bench_padding.py)."""
import numpy as np
import pytest

import bench_padding
from benchlib import missed

pytestmark = pytest.mark.bench


def test_padding_waste(bench_ctx):
    results = bench_padding.run(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == 2
    assert not missed(results), missed(results)


def test_padding_comparison_can_tell_sorted_from_unsorted():
    lengths = np.array([10, 1000] * 50)  # alternating: fixed batches of unsorted rows waste ~half
    c = bench_padding.compare(lengths, n_shards=1, budget=4000)
    assert c["base"] > 0.4 and c["ours"] < 0.01
