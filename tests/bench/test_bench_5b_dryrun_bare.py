"""Benchmark 5b: the workflow's dry run against a bare Snakefile with as many jobs (bench_dryrun.py)."""
import pytest

import bench_dryrun
from benchlib import missed

pytestmark = pytest.mark.bench


def test_dry_run_against_bare_snakefile(bench_ctx):
    results = bench_dryrun.run_against_bare(bench_ctx)
    bench_ctx.add(*results)
    assert len(results) == 4 * len(bench_ctx.bare_counts)
    assert not missed(results), missed(results)
