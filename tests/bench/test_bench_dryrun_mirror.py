"""Benchmark 5b's Snakefiles keep the workflow's shape (part of `make test`).

The mirror (bench_dryrun.MIRROR_SNAKEFILE) stands for the workflow's jobs, inputs and outputs
without its params and commands; if a rule of the workflow gains or loses a per-shard input,
the mirror no longer measures what it claims to. Both are dry-run at two shard counts: the
input files and jobs added per shard must agree. The bare Snakefiles are built from the
workflow's listing: the same jobs per shard and job total, one input per per-shard job (bare)
or the workflow's input edges per shard (edges).
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


def test_bare_snakefiles_follow_the_workflows_listing(tmp_path):
    n = 6
    ours = bench_dryrun._measure("workflow", n, None, 0, tmp_path / "ours")
    spec = ours.pop("spec")
    assert ours["jobs_per_shard"] == 6 and ours["edges_per_shard"] >= 24
    for kind in ("bare", "edges", "directives"):
        res = bench_dryrun._measure(kind, n, spec, ours["jobs"], tmp_path / kind)
        assert res["jobs"] == ours["jobs"], (kind, res["jobs"], ours["jobs"])
        assert res["jobs_per_shard"] == ours["jobs_per_shard"], kind
        if kind == "edges":
            assert res["edges_per_shard"] >= ours["edges_per_shard"]
            assert res["own_edges_per_shard"] == ours["own_edges_per_shard"]
        else:
            assert res["own_edges_per_shard"] == res["jobs_per_shard"]  # one input per per-shard job


def test_parse_listing_reads_jobs_and_per_shard_edges():
    listing = (
        "[Mon Dec  7 06:43:35 2026]\nrule a:\n    input: plan\n    output: a/1\n    jobid: 1\n"
        "    benchmark: b/1.tsv\n    wildcards: s=1\n\n"
        "[Mon Dec  7 06:43:35 2026]\nrule a:\n    input: plan\n    output: a/2\n    wildcards: s=2\n\n"
        "[Mon Dec  7 06:43:35 2026]\nlocalrule all:\n    input: a/1, a/2, b/1.tsv, x\n    jobid: 0\n\n"
        "Job stats:\njob    count\n-----  -----\na          2\nall        1\ntotal      3\n"
    )
    jobs = bench_dryrun.parse_listing(listing)
    assert [j["rule"] for j in jobs] == ["a", "a", "all"]
    assert jobs[0]["benchmark"] == "b/1.tsv" and jobs[1]["benchmark"] is None
    fig = bench_dryrun.per_shard_figures(jobs, 2)
    assert fig["jobs_per_shard"] == 1 and fig["own_edges_per_shard"] == 1 and fig["gathered_edges_per_shard"] == 1.5


def test_every_measured_file_freezes_the_collector_as_the_workflow_does():
    # A freeze on one side only would put the collector's settings into the ratio.
    assert (bench_dryrun.REPO / "Snakefile").read_text().rstrip().endswith("gc.freeze()")
    spec = {"rules": {"step": {"per_shard": 1, "fixed": 1, "shard": 0, "outputs": 1, "benchmark": False}},
            "fixed_jobs": 4, "gathered": 1}
    for kind in ("bare", "edges", "directives"):
        text, _ = bench_dryrun.bare_snakefile(spec, kind)
        assert text.rstrip().endswith("gc.freeze()"), kind
    assert bench_dryrun.MIRROR_SNAKEFILE.rstrip().endswith("gc.freeze()")
