"""Benchmark 5: snakemake dry run at growing shard counts (bench_dryrun.py)."""
import pytest

import bench_dryrun
from benchlib import missed

pytestmark = pytest.mark.bench


def test_dry_run_scales_about_linearly(bench_ctx):
    results = bench_dryrun.run(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == len(bench_ctx.shard_counts) + (len(bench_ctx.shard_counts) >= 3)
    assert not missed(results), missed(results)


def test_marginal_ratio_detects_quadratic_growth():
    ns = [100, 1000, 10000]
    assert bench_dryrun.marginal_ratio(ns, [1 + 0.01 * n for n in ns]) == pytest.approx(1.0)
    assert bench_dryrun.marginal_ratio(ns, [1 + 1e-5 * n * n for n in ns]) > 5
