"""Prerequisites the docs name, and the run times they quote, checked.

- `make dag` needs Graphviz's `dot`, which nothing installs: without it the target fails
  with one line saying what to install, and leaves docs/rulegraph.svg as it was.
- Every run time the docs quote is the sentence rendered from its last measurement in
  docs/run_times.json (scripts/record_run_time.py writes it after a timed run).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from conftest import REPO
from logit_lineage.common.run_times import load_records, run_time_phrase, stale_documents


def test_make_dag_without_graphviz_says_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with a shell and coreutils but no `dot`
    bin_dir.mkdir()
    for tool in ("sh", "rm", "mv", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    before = (REPO / "docs" / "rulegraph.svg").read_bytes()
    # -o: treat the venv stamp as up to date (never reinstall the venv from a test).
    proc = subprocess.run([shutil.which("make"), "-o", ".venv/.installed", "dag"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert proc.returncode != 0
    assert "make dag: Graphviz's 'dot' is not on PATH; install Graphviz (Debian/Ubuntu: sudo apt-get install " \
           "graphviz" in proc.stderr, proc.stderr
    assert (REPO / "docs" / "rulegraph.svg").read_bytes() == before
    readme = (REPO / "README.md").read_text()
    assert "Graphviz" in readme and "apt-get install graphviz" in readme


def test_documented_run_times_are_the_last_measured():
    records = load_records(REPO)
    assert {"default", "smollm2"} <= set(records)
    for name, record in records.items():
        assert record["documented_in"], name
        assert record["jobs"] > 0 and record["wall_s"] > 0 and record["benchmark_cpu_s"] > 0, name
    assert stale_documents(REPO) == []


def test_a_changed_measurement_makes_the_docs_stale(tmp_path):
    (tmp_path / "docs").mkdir()
    shutil.copy(REPO / "docs" / "run_times.json", tmp_path / "docs" / "run_times.json")
    for record in load_records(REPO).values():
        for doc in record["documented_in"]:
            (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / doc, tmp_path / doc)
    assert stale_documents(tmp_path) == []
    records = load_records(tmp_path)
    records["default"]["wall_s"] *= 2
    (tmp_path / "docs" / "run_times.json").write_text(__import__("json").dumps(records))
    stale = stale_documents(tmp_path)
    assert stale and all("run 'default' should say: " + run_time_phrase(records["default"]) in s for s in stale)
