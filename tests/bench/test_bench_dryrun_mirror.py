"""Benchmark 5b's mirror Snakefile keeps the workflow's file graph (part of `make test`).

The mirror (bench_dryrun.MIRROR_SNAKEFILE) stands for the workflow's jobs, inputs and outputs
without its params and commands; if a rule of the workflow gains or loses a per-shard input,
the mirror no longer measures what it claims to. Both are dry-run at two shard counts: the
input files and jobs added per shard must agree.
"""
import pytest

import bench_dryrun

pytestmark = pytest.mark.workflow

COUNTS = (4, 8)


def _per_shard(run) -> tuple[float, float]:
    (n0, a), (n1, b) = run
    return (b["inputs"] - a["inputs"]) / (n1 - n0), (b["jobs"] - a["jobs"]) / (n1 - n0)


def test_mirror_has_the_workflows_per_shard_inputs_and_jobs(tmp_path):
    ours, mirror = [], []
    for n in COUNTS:
        res = bench_dryrun.dry_run(n, tmp_path / f"ours-{n}")
        res["inputs"] = bench_dryrun.input_files((tmp_path / f"ours-{n}" / "stdout.txt").read_text())
        ours.append((n, res))
        mir = bench_dryrun.mirror_dry_run(n, res["jobs"], tmp_path / f"mirror-{n}")
        mir["inputs"] = bench_dryrun.input_files((tmp_path / f"mirror-{n}" / "stdout.txt").read_text())
        assert mir["jobs"] == res["jobs"], (n, mir["jobs"], res["jobs"])
        mirror.append((n, mir))
    inputs, jobs = _per_shard(ours)
    assert (inputs, jobs) == _per_shard(mirror)
    assert jobs == 6 and inputs >= 24  # six jobs per shard, each naming its inputs


def test_input_files_counts_every_listed_input():
    listing = "rule a:\n    input: x, y, z\n    output: o\n\nrule b:\n    input: w\n    output: p\n"
    assert bench_dryrun.input_files(listing) == 4
