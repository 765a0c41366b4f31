"""The default workflow through `profiles/slurm` on a real single-node SLURM cluster.

Needs the cluster from `tests/slurm/cluster.sh start` (root). Without it these tests skip,
unless the cluster was started (marker file) or LINEAGE_REQUIRE_SLURM=1: then a cluster
that is down is a failure, so CI cannot pass them by skipping.

The run uses a copy of profiles/slurm/config.yaml whose SITE SETTINGS lines name this
cluster (partitions cpu/gpu, account lineage), then tests/slurm/profile for fast status
checks. Evidence comes from slurmdbd (`sacct`): each job's partition, requested and
allocated TRES, account and the rule name the plugin writes into the job comment.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIGS, run_snakemake
from slurm.support import (
    SLURM_DIR,
    SPEC_GPU_RULES,
    TEST_OVERLAY,
    TEST_SITE,
    cluster_status,
    content_digest,
    run_id_of,
    sacct_jobs,
    submitted_rules,
    write_site_profile,
)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(3600)]

# Compared between the local and the SLURM run: every file under results/ except these
# folders, which hold what differs between any two runs by design (wall times, log lines).
# Files are compared by content_digest: byte for byte, except container bytes that carry
# no data (gzip header name/mtime, torch.save's zip folder name, safetensors metadata order).
NOT_COMPARED_DIRS = {"logs", "benchmarks"}


@pytest.fixture(scope="session")
def slurm_cluster():
    status = cluster_status()
    if status.returncode == 0:
        return
    required = os.environ.get("LINEAGE_REQUIRE_SLURM") == "1" or (SLURM_DIR / "started").exists()
    if not required:
        pytest.skip(
            "SLURM test cluster not started: run `tests/slurm/cluster.sh start` as root "
            "(installs slurm-wlm, munge, slurmdbd, mariadb when missing)"
        )
    pytest.fail(f"SLURM test cluster is down or unhealthy:\n{status.stdout}{status.stderr}")


def slurm_args(tmp: Path) -> list[str]:
    profile = write_site_profile(tmp / "site-profile", TEST_SITE)
    return ["--profile", str(profile), "--profile", str(TEST_OVERLAY)]


@dataclass
class Run:
    workdir: Path
    returncode: int
    output: str
    seconds: float


def timed_snakemake(workdir: Path, *args: str, check: bool = True) -> Run:
    start = time.monotonic()
    proc = run_snakemake(workdir, *args, configfiles=TINY_CONFIGS, check=check, timeout=2400, slurm=True)
    return Run(workdir, proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)


@pytest.fixture(scope="session")
def runs(slurm_cluster, tmp_path_factory):
    """The default workflow (tiny configs) once locally and once through SLURM."""
    tmp = tmp_path_factory.mktemp("slurm-vs-local")
    local = timed_snakemake(tmp / "local", "--profile", str(REPO / "profiles" / "local"))
    slurm = timed_snakemake(tmp / "slurm", *slurm_args(tmp))
    print(f"\n[timing] local run {local.seconds:.0f} s, SLURM run {slurm.seconds:.0f} s")
    return local, slurm


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def result_files(workdir: Path) -> dict[str, Path]:
    root = workdir / "results"
    return {
        str(path.relative_to(root)): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not NOT_COMPARED_DIRS & set(path.relative_to(root).parts)
    }


def test_cluster_gpu_partition_gives_one_gpu(slurm_cluster, tmp_path):
    """The test cluster itself: `--gpus=1` in `gpu` sees a GPU, a `cpu` job sees none."""
    script = tmp_path / "probe.sh"
    script.write_text('#!/bin/sh\necho "$SLURM_JOB_PARTITION|${CUDA_VISIBLE_DEVICES:-none}"\n')
    seen = {}
    for partition, extra in (("gpu", ["--gpus=1"]), ("cpu", [])):
        out = tmp_path / f"{partition}.out"
        subprocess.run(
            ["sbatch", "--wait", "--quiet", "-p", partition, *extra, "-o", str(out), str(script)],
            check=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        seen[partition] = out.read_text().strip()
    assert seen == {"gpu": "gpu|0", "cpu": "cpu|none"}


def test_every_job_ran_in_its_partition(runs):
    _, slurm = runs
    jobs = sacct_jobs(run_id_of(slurm.output))
    submitted = submitted_rules(slurm.output)
    assert submitted, "snakemake submitted no job to SLURM"
    ran = {}
    for job in jobs:
        ran[job["rule"]] = ran.get(job["rule"], 0) + 1
    assert ran == dict(submitted), "sacct and snakemake disagree on the jobs of this run"
    wrong = []
    for job in jobs:
        gpu = job["rule"] in SPEC_GPU_RULES
        ok = (
            job["State"] == "COMPLETED"
            and job["Partition"] == ("gpu" if gpu else "cpu")
            and ("gres/gpu=1" in job["ReqTRES"]) == gpu
            and ("gres/gpu=1" in job["AllocTRES"]) == gpu
            and job["Account"] == TEST_SITE["ACCOUNT"]
        )
        if not ok:
            wrong.append(" ".join(f"{k}={v}" for k, v in job.items() if k != "JobName"))
    assert not wrong, "jobs in the wrong partition or state:\n" + "\n".join(wrong)
    # Guard against a vacuous pass: the workflow has GPU rules, and they did go to SLURM.
    gpu_rules_run = SPEC_GPU_RULES & set(ran)
    assert gpu_rules_run, f"no GPU rule ran through SLURM; rules run: {sorted(ran)}"
    assert set(ran) - SPEC_GPU_RULES, "no CPU rule ran through SLURM"
    print(f"\n[sacct] {len(jobs)} jobs; on gpu: {sorted(gpu_rules_run)}")


def test_outputs_equal_local_run(runs):
    local, slurm = runs
    want, got = result_files(local.workdir), result_files(slurm.workdir)
    assert want, "the local run produced no results"
    assert sorted(got) == sorted(want), "the two runs produced different files"
    differ = sorted(name for name in want if content_digest(want[name]) != content_digest(got[name]))
    assert not differ, f"{len(differ)} of {len(want)} files differ from the local run:\n" + "\n".join(differ)
    # Equal content, different bytes: not a failure here, but worth seeing.
    bytes_differ = sorted(name for name in want if digest(want[name]) != digest(got[name]))
    print(f"\n[compare] {len(want)} files equal; {len(bytes_differ)} only in container bytes")
    for name in bytes_differ:
        print(f"  {name}")


def pick_victim(workdir: Path, slurm_output: str) -> tuple[str, str, str, str]:
    """A cluster job (GPU rule first) and a results file it reads: (rule, output, log, input)."""
    proc = run_snakemake(workdir, "--detailed-summary", configfiles=TINY_CONFIGS)
    cluster_rules = set(submitted_rules(slurm_output))
    readable = (".parquet", ".safetensors", ".npz", ".pt", ".json", ".json.gz")
    candidates = []
    for line in proc.stdout.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 5 or fields[2] not in cluster_rules:
            continue
        output, rule, log = fields[0], fields[2], fields[3].split(",")[0]
        if not (workdir / output).is_file():
            continue
        for source in fields[4].split(","):
            if source.startswith("results/") and source.endswith(readable) and (workdir / source).is_file():
                candidates.append((rule not in SPEC_GPU_RULES, rule, output, log, source))
    assert candidates, "no cluster job reads a results file: nothing to corrupt"
    _, rule, output, log, source = min(candidates)
    return rule, output, log, source


def test_failed_job_is_reported_and_rerun_after_fix(runs, tmp_path):
    _, slurm = runs
    work = tmp_path / "work"
    shutil.copytree(slurm.workdir, work, symlinks=True)
    rule, output, log, source = pick_victim(work, slurm.output)
    good_input = (work / source).read_bytes()
    good_output = content_digest(work / output)

    # --allowed-rules: only the victim may run, so the corrupt file is not rebuilt upstream.
    only_victim = ["--allowed-rules", rule, *slurm_args(tmp_path)]
    (work / source).write_bytes(b"not a valid file: injected by test_slurm_cluster\n")
    failed = timed_snakemake(work, output, *only_victim, check=False)
    assert failed.returncode != 0, failed.output[-4000:]
    assert "Error in rule " + rule in failed.output, failed.output[-4000:]
    assert log in failed.output, f"the failure report does not name the log {log}"
    assert f".snakemake/slurm_logs/rule_{rule}/" in failed.output, "no SLURM log path in the report"
    assert (work / log).is_file(), "the failed job left no log"
    assert not (work / output).exists(), "the failed job's output was not removed"
    assert "Nothing to be done" not in failed.output
    jobs = sacct_jobs(run_id_of(failed.output))
    assert jobs and {job["rule"] for job in jobs} == {rule}
    assert {job["State"] for job in jobs} == {"FAILED"}, jobs

    (work / source).write_bytes(good_input)
    fixed = timed_snakemake(work, output, *only_victim)
    assert (work / output).is_file()
    assert content_digest(work / output) == good_output, "the rerun after the fix changed the output"
    print(
        f"\n[failure] {rule} reading corrupted {source}: failed run {failed.seconds:.0f} s "
        f"({len(jobs)} SLURM attempts), fixed rerun {fixed.seconds:.0f} s"
    )
