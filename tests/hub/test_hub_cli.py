"""The hub click scripts as users and rules run them (subprocesses)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import SCRIPTS, run_script, subprocess_env
from hubserver.fixtures import hub_env, hub_server, hub_token  # noqa: F401
from hubserver.shards import make_shards
from logit_lineage.formats.card_file import read_card
from logit_lineage.hub.receipt import read_receipt

SCRIPTS_UNDER_TEST = ["create_hub_repo.py", "preupload_shard.py", "commit_shards.py", "render_dataset_card.py",
                      "verify_hub_repo.py"]


def run_online(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    """run_script, but with the network allowed (HF_HUB_OFFLINE=0) towards the local Hub."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env={**subprocess_env(), **env}, timeout=120)


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("name", SCRIPTS_UNDER_TEST)
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout
    assert "--hub" in proc.stdout


def test_publishing_off_is_an_error_not_a_silent_success(tmp_path):
    shard = make_shards(tmp_path, 1)[0]
    out = tmp_path / "receipt.json"
    proc = run_script("preupload_shard.py", "--hub", "{}", "--shard", str(shard), "--n-shards", "1",
                      "--receipt", str(out))
    assert "hub.repo_id is not set" in _error_line(proc)
    assert not out.exists()


def test_token_in_config_is_refused_without_echoing_it(tmp_path):
    out = tmp_path / "repo.json"
    proc = run_script("create_hub_repo.py", "--hub", json.dumps({"repo_id": "a/b", "token": "hf_inconfig"}),
                      "--receipt", str(out))
    line = _error_line(proc)
    assert "hub.token" in line and "hf_inconfig" not in proc.stderr
    assert not out.exists()


def test_offline_mode_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_whatever")
    out = tmp_path / "repo.json"
    proc = run_script("create_hub_repo.py", "--hub", '{"repo_id": "a/b"}', "--receipt", str(out))  # offline env
    assert "HF_HUB_OFFLINE" in _error_line(proc)
    assert not out.exists()


def test_bad_receipt_names_file_and_key(tmp_path):
    bad = tmp_path / "shard-00000.json"
    bad.write_text(json.dumps({"receipt_version": 1, "kind": "shard"}))
    out = tmp_path / "commit.json"
    proc = run_script("commit_shards.py", "--hub", '{"repo_id": "a/b"}', "--receipt", str(bad),
                      "--output", str(out))
    line = _error_line(proc)
    assert str(bad) in line and "missing key" in line
    assert not out.exists()


def test_card_refuses_a_parquet_that_is_not_a_logits_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = tmp_path / "shard-00000.parquet"
    pq.write_table(pa.table({"a": [1]}), shard)
    out = tmp_path / "README.md"
    proc = run_script("render_dataset_card.py", str(shard), "--hub", '{"repo_id": "a/b"}',
                      "--config-sha256", "0" * 64, "--output", str(out))
    line = _error_line(proc)
    assert str(shard) in line and "logit_lineage.format_version" in line
    assert not out.exists()


def test_cli_chain_publishes_and_verifies(hub_server, hub_env, hub_token, tmp_path):
    shards = make_shards(tmp_path / "logits", 3)
    hub = json.dumps({"repo_id": "org/cli", "backoff_seconds": 0.01})
    r = tmp_path / "receipts"
    outputs = []

    def ok(name, *args):
        proc = run_online(name, *args, env=hub_env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
        return proc

    ok("create_hub_repo.py", "--hub", hub, "--receipt", str(r / "repo.json"))
    for i, shard in enumerate(shards):
        ok("preupload_shard.py", "--hub", hub, "--shard", str(shard), "--n-shards", "3",
           "--repo-receipt", str(r / "repo.json"), "--receipt", str(r / f"shard-{i:05d}.json"))
    ok("commit_shards.py", "--hub", hub, *[a for i in range(3) for a in ("--receipt", str(r / f"shard-{i:05d}.json"))],
       "--output", str(r / "commit-00000.json"))
    ok("render_dataset_card.py", *map(str, shards), "--hub", hub, "--config-sha256", "ab" * 32,
       "--output", str(tmp_path / "README.md"))
    ok("commit_shards.py", "--hub", hub, "--card", str(tmp_path / "README.md"), "--after",
       str(r / "commit-00000.json"), "--output", str(r / "card.json"))
    ok("verify_hub_repo.py", *map(str, shards), "--hub", hub, "--download", "--output", str(tmp_path / "v.json"))

    assert hub_server.uploads == 3 and hub_server.commits == 2
    shard_receipt = read_receipt(r / "shard-00001.json", "shard")
    assert shard_receipt["path_in_repo"] == "data/train-00001-of-00003.parquet"
    assert shard_receipt["endpoint"] == hub_server.url and shard_receipt["uploaded"]
    commit = read_receipt(r / "commit-00000.json", "commit")
    assert commit["created"] and len(commit["files"]) == 3
    meta, _ = read_card(tmp_path / "README.md")
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*-of-00003.parquet"
    assert meta["logit_lineage"]["lineage"]["config_sha256"] == "ab" * 32
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["downloaded"] and len(report["files"]) == 3
    written = "".join(p.read_text() for p in r.glob("*.json")) + "".join(outputs)
    assert hub_token not in written

    # verify notices a shard that differs from what was published
    make_shards(tmp_path / "other", 3, salt=7)
    proc = run_online("verify_hub_repo.py", *map(str, sorted((tmp_path / "other").glob("*.parquet"))),
                      "--hub", hub, "--output", str(tmp_path / "v2.json"), env=hub_env)
    line = _error_line(proc)
    assert "3 problem(s)" in line and "data/train-00000-of-00003.parquet: differs" in line
    assert not (tmp_path / "v2.json").exists()


def test_commit_that_always_fails_leaves_no_receipt(hub_server, hub_env, hub_token, tmp_path):
    shard = make_shards(tmp_path, 1)[0]
    hub = json.dumps({"repo_id": "org/fail", "retries": 2, "backoff_seconds": 0.01})
    assert run_online("create_hub_repo.py", "--hub", hub, "--receipt", str(tmp_path / "repo.json"),
                      env=hub_env).returncode == 0
    assert run_online("preupload_shard.py", "--hub", hub, "--shard", str(shard), "--n-shards", "1",
                      "--receipt", str(tmp_path / "s.json"), env=hub_env).returncode == 0
    before = shard.read_bytes()
    hub_server.add_fault("commit", 500)
    proc = run_online("commit_shards.py", "--hub", hub, "--receipt", str(tmp_path / "s.json"),
                      "--output", str(tmp_path / "c.json"), env=hub_env)
    line = _error_line(proc)
    assert "after 3 attempt(s)" in line and "500" in line
    assert hub_token not in proc.stderr
    assert not (tmp_path / "c.json").exists()
    assert hub_server.counts["commit"] == 3 and hub_server.commits == 0
    assert shard.read_bytes() == before
