"""docs/KD.md's training loop as a user runs it: a fresh venv outside the repository with
`pip install torch==2.13.0` then `pip install '<repository>[kd]'` and nothing else, the
run's results named by LOGIT_LINEAGE_RESULTS (an absolute path), the working directory
elsewhere and no PYTHONPATH: `[kd]` alone must be enough for the example as written."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, extract_args, run_script

pytestmark = pytest.mark.venv


def kd_example() -> str:
    text = (REPO / "docs" / "KD.md").read_text()
    return re.search(r"## A training loop.*?```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def demo_results(demo_inputs, shard, tmp_path_factory):
    """A results folder laid out as the workflow's: the demo teacher and conversations, and
    one shard of logits made from them with the teacher named relative to the run folder."""
    run_dir = tmp_path_factory.mktemp("run")
    results = run_dir / "results"
    shutil.copytree(demo_inputs["teacher"], results / "demo" / "teacher")
    shutil.copy2(demo_inputs["dataset"], results / "demo" / "conversations.parquet")
    args = extract_args(shard, results / "distill" / "logits" / "shard-00001.parquet")
    args[args.index("--teacher") + 1] = "results/demo/teacher"
    args[args.index("--dataset") + 1] = "results/demo/conversations.parquet"
    run_script("extract_logits.py", *args, check=True, cwd=run_dir)
    return results


def test_kd_md_example_runs_in_a_venv_with_only_the_kd_extra(demo_results, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    for args in (["torch==2.13.0"], [f"{REPO}[kd]"]):  # torch first: the pinned CPU wheel
        proc = subprocess.run(pip + args, capture_output=True, text=True, timeout=1500, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # Only what [kd] brings: no snakemake, no workflow-only packages.
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True, env=env).stdout.lower()
    assert "snakemake" not in listed and "matplotlib" not in listed and "logit-lineage" in listed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", kd_example()], cwd=elsewhere,
                          env={**env, "LOGIT_LINEAGE_RESULTS": str(demo_results)},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(line.split()[1]) for line in proc.stdout.splitlines()]
    # One shard of ~80 rows: at least the first report (step 0); every loss is finite.
    assert losses and all(abs(loss) < float("inf") for loss in losses), proc.stdout
    # The package came from the venv, not from the repository.
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import logit_lineage; print(logit_lineage.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where and str(REPO) not in where, where
