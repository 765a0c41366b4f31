"""The Hub chain in the real workflow: snakemake publishes the distillation chain's tiny shards to the local Hub."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import TINY_CONFIGS, run_snakemake, subprocess_env
from hubserver.fixtures import hub_env, hub_server, hub_token  # noqa: F401

pytestmark = [pytest.mark.workflow,
              pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")]

REPO_ID = "org/tiny-logits"
# Smaller than the tiny overlays: publishing does not care how good the teacher is.
SMALL = {"demo": {"n_conversations": 40, "train_steps": 2, "hidden_size": 16, "num_layers": 1,
                  "num_heads": 2, "vocab_size": 300},
         "distill": {"n_shards": 2}}
N = SMALL["distill"]["n_shards"]
TARGET = "results/hub/verify.json"


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def distill_workdir(tmp_path_factory) -> Path:
    """The distillation chain's shards, built once per module (publishing off)."""
    workdir = tmp_path_factory.mktemp("distill")
    small = _write_config(workdir.parent / "small.yaml", SMALL)
    run_snakemake(workdir, "--until", "extract_logits", "-c2", configfiles=[*TINY_CONFIGS, small])
    assert len(list((workdir / "results/distill/logits").glob("shard-*.parquet"))) == N
    return workdir


@pytest.fixture
def workdir(distill_workdir, tmp_path) -> Path:
    # copytree keeps mtimes and .snakemake's records, so the distillation chain is up to date in the copy.
    return Path(shutil.copytree(distill_workdir, tmp_path / "wd", symlinks=True))


def _configs(tmp_path: Path, **hub) -> list[Path]:
    small = _write_config(tmp_path / "small.yaml", SMALL)
    settings = {"repo_id": REPO_ID, "retries": 3, "backoff_seconds": 0.05, "backoff_max_seconds": 0.2, **hub}
    return [*TINY_CONFIGS, small, _write_config(tmp_path / "hub.yaml", {"hub": settings})]


def _shards(workdir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((workdir / "results/distill/logits").glob("shard-*.parquet"))}


def _assert_no_token(workdir: Path, token: str, *texts: str) -> None:
    for path in [*workdir.joinpath("results").rglob("*"), *workdir.joinpath(".snakemake/log").rglob("*")]:
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"token leaked into {path}"
    assert all(token not in text for text in texts)


def test_workflow_publishes_idempotently(workdir, tmp_path, hub_server, hub_env, hub_token):
    from huggingface_hub import DatasetCard, hf_hub_download

    env = subprocess_env(**hub_env)
    configs = _configs(tmp_path)
    # Transient trouble on the way: each is retried (ours: commit, paths-info; huggingface_hub's: LFS PUT).
    hub_server.add_fault("commit", 500, times=2)
    hub_server.add_fault("paths_info", 503, times=1)
    hub_server.add_fault("lfs_upload", 500, times=1)
    first = run_snakemake(workdir, TARGET, "-c2", configfiles=configs, env=env)
    assert hub_server.uploads == N and hub_server.commits == 2  # one shard batch + the card
    assert hub_server.counts["xet"] == 0

    for i in range(N):
        got = hf_hub_download(REPO_ID, f"data/train-{i:05d}-of-{N:05d}.parquet", repo_type="dataset",
                              endpoint=hub_server.url, cache_dir=tmp_path / "cache")
        local = workdir / f"results/distill/logits/shard-{i:05d}.parquet"
        assert Path(got).read_bytes() == local.read_bytes()
    card = DatasetCard(Path(hf_hub_download(REPO_ID, "README.md", repo_type="dataset", endpoint=hub_server.url,
                                            cache_dir=tmp_path / "cache")).read_text())
    assert card.data.configs[0]["data_files"] == [{"split": "train", "path": f"data/train-*-of-{N:05d}.parquet"}]
    lineage = card.data.to_dict()["logit_lineage"]
    assert lineage["lineage"]["teacher"] == "demo" and re.fullmatch(r"[0-9a-f]{64}",
                                                                    lineage["lineage"]["config_sha256"])
    assert (workdir / TARGET).is_file()
    _assert_no_token(workdir, hub_token, first.stdout, first.stderr)

    # Rerun: nothing to do at all.
    hub_server.reset_counts()
    again = run_snakemake(workdir, TARGET, "-c2", configfiles=configs, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert sum(hub_server.counts.values()) == 0

    # Receipts lost: every hub job runs again, the Hub already has everything.
    shutil.rmtree(workdir / "results/hub")
    run_snakemake(workdir, TARGET, "-c2", configfiles=configs, env=env)
    assert hub_server.uploads == 0 and hub_server.commits == 0
    assert hub_server.counts["lfs_batch"] == 0

    # A changed shard (same rows, other compression: new bytes) is uploaded again, alone.
    import pyarrow.parquet as pq

    changed = workdir / "results/distill/logits/shard-00001.parquet"
    pq.write_table(pq.read_table(changed), changed, compression="gzip")
    hub_server.reset_counts()
    run_snakemake(workdir, TARGET, "-c2", configfiles=configs, env=env)
    assert hub_server.uploads == 1 and hub_server.commits == 1
    assert hub_server.files(REPO_ID)[f"data/train-00001-of-{N:05d}.parquet"] == changed.read_bytes()
    _assert_no_token(workdir, hub_token)


def test_workflow_failure_leaves_no_receipt_and_shards_untouched(workdir, tmp_path, hub_server, hub_env,
                                                                 hub_token):
    env = subprocess_env(**hub_env)
    before = _shards(workdir)
    hub_server.add_fault("paths_info", 500)  # always
    proc = run_snakemake(workdir, TARGET, "-c2", configfiles=_configs(tmp_path), env=env, check=False)
    assert proc.returncode != 0
    assert not list((workdir / "results/hub/receipts").glob("shards/*.json"))
    assert not (workdir / TARGET).exists()
    assert _shards(workdir) == before
    logs = list((workdir / "results/logs/hub/preupload").glob("*.log"))
    errors = [line for log in logs for line in log.read_text().splitlines() if line.startswith("error:")]
    assert errors and all("failed after 4 attempt(s)" in e and "500" in e for e in errors)
    _assert_no_token(workdir, hub_token, proc.stdout, proc.stderr)


def _job_counts(dry_run_output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry_run_output, re.M)}


def test_default_config_does_not_publish(tmp_path):
    proc = run_snakemake(tmp_path, "-n", configfiles=TINY_CONFIGS)
    assert not [job for job in _job_counts(proc.stdout) if job.startswith("hub_")]


@pytest.mark.parametrize("n_shards, per_commit, commits", [(1000, 100, 10), (7, 3, 3)])
def test_dag_commit_count_on_paper(tmp_path, n_shards, per_commit, commits):
    config = _write_config(tmp_path / "scale.yaml", {"distill": {"n_shards": n_shards},
                                                      "hub": {"repo_id": REPO_ID, "shards_per_commit": per_commit}})
    proc = run_snakemake(tmp_path, TARGET, "-n", "--quiet", "rules", configfiles=[*TINY_CONFIGS, config])
    jobs = _job_counts(proc.stdout)
    assert jobs["hub_preupload_shard"] == n_shards
    # 1,000 shards: 10 shard commits + 1 card commit = 11, the limit (ceil(n / 100) + 1).
    assert jobs["hub_commit_shards"] == commits and jobs["hub_commit_card"] == 1
