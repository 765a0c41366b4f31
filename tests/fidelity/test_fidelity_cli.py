"""The chain's click scripts as a user runs them: --help, results, and one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_script
from logit_lineage.formats.dense_dump import DenseEntry, dump_paths, write_dense_dump

SCRIPTS = ("dump_dense_logits.py", "analyze_divergence.py", "fidelity_report.py")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout


def horizon_dump(path, seed=0, shift=0.0):
    """The original dense-dump tool's shape: predictions of positions at several horizons and timesteps."""
    g = torch.Generator().manual_seed(seed)
    entries = []
    for sample in range(2):
        for pos in range(3):
            final = torch.randn(20, generator=g) * 3
            for t, horizon in enumerate((8, 4, 2, 1)):
                noise = torch.randn(20, generator=g) * horizon * 0.3
                entries.append(DenseEntry(sample_idx=sample, example_idx=10 + sample, position=pos,
                                          logits=final + noise * (horizon > 1) + shift,
                                          fields={"timestep": t, "horizon": horizon}))
    write_dense_dump(path, entries)
    return path


def test_analyze_one_dump_by_horizon(tmp_path):
    dump = horizon_dump(tmp_path / "a.json.gz")
    out = tmp_path / "div.json"
    proc = run_script("analyze_divergence.py", str(dump), "--group-by", "horizon", "--order-by", "timestep",
                      "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Summary by horizon" in proc.stdout and "Analyzed 6 positions (18 comparisons)" in proc.stdout
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"2", "4", "8"}
    kl = [summary[h]["kl"]["mean"] for h in ("2", "4", "8")]
    assert kl == sorted(kl) and kl[0] > 0  # farther horizons diverge more


def test_analyze_two_dumps(tmp_path):
    a = horizon_dump(tmp_path / "a.json.gz")
    b = horizon_dump(tmp_path / "b.json.gz", shift=5.0)  # same distributions, shifted logits
    proc = run_script("analyze_divergence.py", str(a), str(b), "--match-on", "example_idx,position,timestep",
                      "--group-by", "horizon")
    assert proc.returncode == 0, proc.stderr
    assert "horizon 1: n = 6, KL = 0.0000 ± 0.0000" in proc.stdout


def test_analyze_mismatched_keys(tmp_path):
    a = horizon_dump(tmp_path / "a.json.gz")
    meta_path = dump_paths(a)[2]
    meta = json.loads(meta_path.read_text())
    meta[0]["key"], meta[0]["sample_idx"] = "sample_7_entry_0", 7
    meta_path.write_text(json.dumps(meta))
    out = tmp_path / "x.json"
    proc = run_script("analyze_divergence.py", str(a), "--json", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {dump_paths(a)[1]}: metadata keys and safetensors keys differ")
    assert not out.exists()


def test_truncated_dump_fails_the_fidelity_step_without_output(tmp_path):
    a = horizon_dump(tmp_path / "a.json.gz")
    st = dump_paths(a)[1]
    st.write_bytes(st.read_bytes()[:-50])
    logits = tmp_path / "l.parquet"
    logits.write_bytes(b"not parquet")
    out = tmp_path / "out.json"
    proc = run_script("fidelity_report.py", "shard", "--dense", str(a), "--logits", str(logits), "--output", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "truncated or altered safetensors file" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.json.gz", "a.safetensors", "a.metadata.json", "l.parquet"])


def test_aggregate_refuses_a_foreign_json(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"format": "other"}))
    proc = run_script("fidelity_report.py", "aggregate", "--input", str(bad), "--json", str(tmp_path / "r.json"),
                      "--plot", str(tmp_path / "r.png"))
    assert proc.returncode == 1 and "not a logit-lineage.fidelity-shard file" in proc.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.png").exists()
