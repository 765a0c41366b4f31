"""The embedded default config, end to end, as `make demo` runs it (every chain)."""
from __future__ import annotations

import pytest

from conftest import run_snakemake

pytestmark = pytest.mark.workflow


def test_default_config_builds_every_target(tmp_path):
    proc = run_snakemake(tmp_path, "--cores", "2", timeout=2400)
    assert "steps (100%) done" in proc.stdout + proc.stderr
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
    for plot in ("risk_coverage", "sort_grid_generalization", "fidelity_report"):
        assert plot in html, plot
