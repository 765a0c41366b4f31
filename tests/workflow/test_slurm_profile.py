"""profiles/slurm without a cluster: the site settings are the only site-specific values, and
a dry run routes every GPU rule to the GPU partition with one GPU, every other rule to the
CPU partition. (The run on a real SLURM cluster is tests/workflow/test_slurm_cluster.py.)"""
from __future__ import annotations

import re

import pytest

from conftest import REPO, run_snakemake
from slurm.support import (
    REAL_PROFILE,
    SPEC_GPU_RULES,
    default_resources,
    profile_settings,
    set_resources,
    site_profile_text,
    write_site_profile,
)

OTHER_SITE = {"CPU_PARTITION": "short", "GPU_PARTITION": "a100", "ACCOUNT": "proj42"}


def test_real_profile_routes_gpu_rules_to_gpu_partition():
    settings = profile_settings(REAL_PROFILE)
    assert settings["executor"] == "slurm"
    assert (REPO / "profiles" / "default").exists() is False, "snakemake would apply it to every run"
    defaults = default_resources(settings)
    assert defaults["slurm_partition"] == "'cpu'"
    assert "slurm_account" not in defaults, 'ACCOUNT = "" must submit without -A'
    assert {"mem_mb", "runtime"} <= defaults.keys()
    per_rule = set_resources(settings)
    assert set(per_rule) == SPEC_GPU_RULES
    for rule, res in per_rule.items():
        assert res["slurm_partition"] == "'gpu'", rule
        if rule in ("extract_logits", "extract_student_format"):  # distill.gpus_per_job GPUs, its own
            assert "gpu" not in res, rule
        else:
            assert res["gpu"] == "1", rule
        assert {"mem_mb", "runtime"} <= res.keys(), rule
        # --gres and --gpus together would ask for the GPU twice.
        assert "gres" not in res, rule
    for key in ("jobs", "latency-wait", "rerun-incomplete", "retries"):
        assert key in settings, key


def test_site_settings_are_the_only_site_values(tmp_path):
    """Editing the three SITE SETTINGS lines retargets every partition and the account."""
    original = REAL_PROFILE.read_text().splitlines()
    edited = site_profile_text(OTHER_SITE).splitlines()
    changed = [i for i, (a, b) in enumerate(zip(original, edited)) if a != b]
    assert len(original) == len(edited) and len(changed) == 3
    header = "\n".join(original[: max(changed) + 2])
    assert "SITE SETTINGS" in header, "the editable lines must sit in the marked block at the top"

    settings = profile_settings(write_site_profile(tmp_path / "site", OTHER_SITE) / "config.yaml")
    defaults = default_resources(settings)
    assert defaults["slurm_partition"] == "'short'"
    assert defaults["slurm_account"] == "'proj42'"
    assert {res["slurm_partition"] for res in set_resources(settings).values()} == {"'a100'"}
    # No other partition or account name is written anywhere in the profile.
    rest = [line for i, line in enumerate(original) if i not in changed]
    assert not [line for line in rest if re.search(r"^\s*-?\s*\w*PARTITION\s*=|ACCOUNT\s*=", line)]


def _planned_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of each job a dry run plans to submit (local jobs excluded)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", dry_run_output):
        head = re.match(r"(local)?rule (\w+):\n", block)
        if not head or head.group(1):
            continue
        found = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        resources = dict(
            item.split("=", 1) for item in (found.group(1).split(", ") if found else []) if "=" in item
        )
        jobs.append((head.group(2), resources))
    return jobs


@pytest.mark.workflow
def test_dry_run_routes_every_job(tmp_path, tiny_configs):
    profile = write_site_profile(tmp_path / "profile", OTHER_SITE)
    proc = run_snakemake(
        tmp_path / "work", "-n", "--profile", str(profile), configfiles=tiny_configs
    )
    jobs = _planned_jobs(proc.stdout + proc.stderr)
    assert jobs, "the dry run planned no cluster job"
    wrong = []
    for rule, res in jobs:
        want = ("a100", "1") if rule in SPEC_GPU_RULES else ("short", None)
        got = (res.get("slurm_partition"), res.get("gpu"))
        if got != want or res.get("slurm_account") != "proj42":
            wrong.append(f"{rule}: partition={got[0]} gpu={got[1]} account={res.get('slurm_account')}")
    assert not wrong, "misrouted jobs:\n" + "\n".join(wrong)
