"""Shard lists: aggregate rules read their shards from a list file (`--logits @LIST`), so
their shell commands stay short at any shard count (a shell command is limited to 128 KiB)."""
from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import REPO, run_snakemake
from logit_lineage.common.cli import paths_option

SCRIPT = REPO / "scripts" / "list_paths.py"


def run_list(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd)


def test_list_paths_writes_every_shard_in_order(tmp_path):
    for i in range(3):
        (tmp_path / f"shard-{i:05d}.parquet").write_text("x")
    proc = run_list("--template", "shard-{shard}.parquet", "--count", "3", "--output", "l/all.list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "l/all.list").read_text() == "".join(f"shard-{i:05d}.parquet\n" for i in range(3))


def test_list_paths_refuses_a_missing_shard_and_a_template_without_placeholder(tmp_path):
    (tmp_path / "shard-00000.parquet").write_text("x")
    proc = run_list("--template", "shard-{shard}.parquet", "--count", "2", "--output", "x.list", cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "x.list").exists()
    assert proc.stderr.strip().splitlines()[-1] == "error: shard-00001.parquet: no such file (is its shard built?)"
    proc = run_list("--template", "shard.parquet", "--count", "1", "--output", "x.list", cwd=tmp_path)
    assert proc.returncode == 1 and "has no {shard} placeholder" in proc.stderr


def test_paths_option_mixes_paths_and_lists(tmp_path):
    a, b, c = (tmp_path / n for n in ("a", "b", "c"))
    for p in (a, b, c):
        p.write_text("x")
    listing = tmp_path / "some.list"
    listing.write_text(f"{b}\n\n{c}\n")

    @click.command()
    @paths_option("--file", "files", required=True)
    def show(files):
        click.echo(",".join(p.name for p in files))

    ok = CliRunner().invoke(show, ["--file", str(a), "--file", f"@{listing}"])
    assert ok.exit_code == 0 and ok.output.strip() == "a,b,c"
    listing.write_text(f"{b}\n{tmp_path / 'gone'}\n")
    bad = CliRunner().invoke(show, ["--file", f"@{listing}"])
    assert bad.exit_code == 2 and f"'{tmp_path / 'gone'}' (listed in {listing}) does not exist" in bad.output
    missing = CliRunner().invoke(show, ["--file", f"@{tmp_path / 'nolist'}"])
    assert missing.exit_code == 2 and "cannot read the list" in missing.output


@pytest.mark.workflow
def test_aggregate_commands_stay_short_at_3000_shards(tmp_path):
    """Every shell command of a 3,000-shard DAG fits a shell's 128 KiB argument limit (one
    `--logits` per shard would need ~160 KiB for each aggregate rule)."""
    cfg = tmp_path / "many.yaml"
    cfg.write_text("distill:\n  n_shards: 3000\n")
    proc = run_snakemake(tmp_path, "-n", "-p", configfiles=[cfg])
    commands = re.findall(r"^Shell command: (.*)$", proc.stdout, re.M)
    assert len(commands) > 3000
    longest = max(commands, key=len)
    assert len(longest.encode()) < 16 * 1024, longest[:300]
    assert any("--logits @results/lists/logits.list" in c for c in commands)
