"""The embedded default config, end to end, as `make demo` runs it (every chain)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO, assert_modes_follow_umask, run_snakemake, subprocess_env

pytestmark = pytest.mark.workflow


def test_default_config_builds_every_target(tmp_path):
    proc = run_snakemake(tmp_path, "--cores", "2", timeout=2400)
    assert "steps (100%) done" in proc.stdout + proc.stderr
    # Run under umask 022: every output (shards, dense dumps, experts' data, student
    # tables, logs) is readable by the group and others, as any file the user makes.
    assert assert_modes_follow_umask(tmp_path / "results") > 200
    listing = run_snakemake(tmp_path, "--summary", "--cores", "1")
    rows = [ln.split("\t") for ln in listing.stdout.splitlines()[1:] if "\t" in ln]
    assert rows, listing.stdout
    missing = [r[0] for r in rows if r[-1].strip() not in ("ok", "-") and "missing" in r[-1]]
    assert not missing, missing
    # Nothing left to do: the DAG is complete and consistent.
    again = run_snakemake(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # The HTML report holds every plot the chains mark with report().
    report = tmp_path / "report.html"
    run_snakemake(tmp_path, "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    for plot in ("risk_coverage", "sort_grid_generalization", "fidelity_report", "student_kl", "summary_nucleus"):
        assert plot in html, plot
    # docs/KD.md's training loop runs as written on what the default run made.
    example = re.search(r"## A training loop.*?```python\n(.*?)```", (REPO / "docs" / "KD.md").read_text(), re.S)
    proc = subprocess.run([sys.executable, "-c", example.group(1)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(line.split()[1]) for line in proc.stdout.splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0], proc.stdout
    # A student tokenizer that is not the teacher's is refused in one line, before any step.
    mismatch = (
        "from transformers import AutoTokenizer\n"
        "from logit_lineage.kd import CompressedLogitsDataset\n"
        "tok = AutoTokenizer.from_pretrained('results/demo/teacher')\n"
        "tok.add_tokens(['<student-only>'])\n"
        "CompressedLogitsDataset('results/distill/logits', student_tokenizer=tok)\n"
        "print('no error')\n"
    )
    proc = subprocess.run([sys.executable, "-c", mismatch], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "no error" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert "student tokenizer does not match the teacher's" in last and "shard-0000" in last, last
