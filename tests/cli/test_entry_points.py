"""The user tools installed as commands ([project.scripts] in pyproject.toml): each is on the
environment's PATH after `pip install`, answers --help, and its scripts/ twin runs the same command."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, run_script

ENTRY_POINTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_the_user_tools_are_entry_points():
    assert set(ENTRY_POINTS) >= {"logit-lineage-analyze-divergence", "logit-lineage-explore-logits",
                                 "logit-lineage-inspect-checkpoint"}
    assert all(target.startswith("logit_lineage.cli.") for target in ENTRY_POINTS.values())


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_point_answers_help_like_its_script(name):
    command = Path(sys.executable).parent / name
    assert command.exists(), f"{command} is not installed: reinstall the package (pip install -e .)"
    proc = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Usage:" in proc.stdout, proc.stderr
    module = ENTRY_POINTS[name].split(":")[0].rsplit(".", 1)[1]
    twin = run_script(f"{module}.py", "--help")
    assert twin.returncode == 0 and twin.stdout.split("\n", 1)[1] == proc.stdout.split("\n", 1)[1]
