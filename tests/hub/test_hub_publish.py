"""The publishing library against the local Hub (tests/hubserver), in process.

Round trip, idempotence, a changed shard, faults and the commit count at scale.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubserver.fixtures import hub_env, hub_server, hub_token  # noqa: F401
from hubserver.shards import make_shard, make_shards
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.card_file import CARD_KEY, render_card
from logit_lineage.hub import naming
from logit_lineage.hub.card import card_body, card_metadata, summarize_shards
from logit_lineage.hub.publish import CommitItem, commit_items, create_repo, preupload_shard, sha256_file
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.settings import HubSettings
from logit_lineage.hub.target import make_api, make_target
from logit_lineage.hub.verify import Expected, verify_repo

# huggingface_hub 2.4.0 itself PUTs LFS content with httpx2's deprecated `data=`.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
REPO_ID = "org/logits"
CONFIG_SHA = "c" * 64


def _publish(settings: HubSettings, shards: list[Path], *, card: bool = True) -> dict:
    """The workflow's steps in order, as the rules run them (one process here)."""
    api, target = make_api(settings), make_target(settings)
    retry = RetryPolicy.from_settings(settings)
    n = len(shards)
    create_repo(api, target, private=settings.private, retry=retry)
    receipts = [preupload_shard(api, target, p, naming.path_in_repo(naming.shard_index(p), n), retry=retry)
                for p in shards]
    commits = []
    for b in range(naming.n_batches(n, settings.shards_per_commit)):
        members = naming.batch_members(b, n, settings.shards_per_commit)
        items = [CommitItem(r["path_in_repo"], r["sha256"], r["size"], local_path=r["local_path"])
                 for r in (receipts[i] for i in members)]
        commits.append(commit_items(api, target, items, message=f"batch {b}", retry=retry))
    if card:
        summary = summarize_shards(shards)
        text = render_card(card_metadata(summary, repo_id=target.repo_id, config_sha256=CONFIG_SHA),
                           card_body(summary, repo_id=target.repo_id, config_sha256=CONFIG_SHA))
        commits.append(commit_items(api, target, [CommitItem.from_bytes("README.md", text.encode())],
                                    message="card", retry=retry))
    return {"receipts": receipts, "commits": commits, "api": api, "target": target}


@pytest.fixture
def settings(hub_server, hub_env):
    return HubSettings(repo_id=REPO_ID, endpoint=hub_server.url, backoff_seconds=0.01,
                       backoff_max_seconds=0.05, retries=3)


@pytest.fixture
def shards(tmp_path):
    return make_shards(tmp_path / "logits", 5, rows=4)


def test_round_trip_download_is_byte_identical(hub_server, settings, shards, tmp_path):
    from huggingface_hub import DatasetCard, hf_hub_download

    result = _publish(settings, shards)
    assert hub_server.uploads == 5 and hub_server.commits == 2
    assert hub_server.counts["xet"] == 0  # plain LFS, never the Xet protocol
    for i, shard in enumerate(shards):
        got = hf_hub_download(REPO_ID, naming.path_in_repo(i, 5), repo_type="dataset", endpoint=hub_server.url,
                              cache_dir=tmp_path / "cache")
        assert Path(got).read_bytes() == shard.read_bytes()
    card_file = hf_hub_download(REPO_ID, "README.md", repo_type="dataset", endpoint=hub_server.url,
                                cache_dir=tmp_path / "cache")
    card = DatasetCard(Path(card_file).read_text())
    assert card.data.configs == [{"config_name": "default",
                                  "data_files": [{"split": "train", "path": "data/train-*-of-00005.parquet"}]}]
    lineage = card.data.to_dict()[CARD_KEY]
    assert lineage["lineage"] == {"teacher": "demo", "dataset": "demo", "config_sha256": CONFIG_SHA}
    assert lineage["format_version"] == 2 and lineage["n_rows"] == 20
    assert lineage["extraction"]["top_p"] == 0.98 and lineage["params_varying_per_shard"] == ["shard"]
    # Receipts carry what the Hub confirmed.
    assert {r["sha256"] for r in result["receipts"]} == {sha256_file(s) for s in shards}
    assert all(r["uploaded"] and r["transfer"] == "lfs" for r in result["receipts"])
    assert result["commits"][0]["commit"] != result["commits"][1]["commit"]
    report = verify_repo(result["api"], result["target"],
                         [Expected(str(s), naming.path_in_repo(i, 5)) for i, s in enumerate(shards)],
                         retry=RetryPolicy(0), download=True)
    assert len(report["files"]) == 5 and report["card"]["format_version"] == 2


def test_load_dataset_reads_the_published_repo(hub_server, hub_env, settings, shards, tmp_path):
    _publish(settings, shards)
    code = ("from datasets import load_dataset; ds = load_dataset('org/logits', split='train'); "
            "print(ds.num_rows, sorted(ds['index'])[:3], ds.features['top_indices_low'])")
    env = {**os.environ, **hub_env, "HF_DATASETS_OFFLINE": "0", "HF_HUB_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("20 [0, 1, 2]"), proc.stdout
    assert "uint16" in proc.stdout


def test_second_run_uploads_nothing_and_commits_nothing(hub_server, settings, shards):
    first = _publish(settings, shards)
    hub_server.reset_counts()
    second = _publish(settings, shards)
    assert hub_server.uploads == 0 and hub_server.commits == 0
    assert hub_server.counts["lfs_batch"] == 0  # not even asked where to upload
    assert all(not r["uploaded"] for r in second["receipts"])
    assert all(r["commit"] for r in second["receipts"])  # they name the commit that holds them
    assert all(not c["created"] for c in second["commits"])
    assert second["commits"][-1]["commit"] == first["commits"][-1]["commit"]
    assert {f["status"] for c in second["commits"] for f in c["files"]} == {"unchanged"}


def test_changed_shard_is_uploaded_again_and_only_it(hub_server, settings, shards):
    _publish(settings, shards)
    make_shard(shards[2], 2, rows=4, salt=1)  # new content, same name
    hub_server.reset_counts()
    result = _publish(settings, shards)
    assert hub_server.uploads == 1 and hub_server.commits == 1  # the card is unchanged
    statuses = {f["path_in_repo"]: f["status"] for f in result["commits"][0]["files"]}
    assert statuses.pop(naming.path_in_repo(2, 5)) == "updated"
    assert set(statuses.values()) == {"unchanged"}
    files = hub_server.files(REPO_ID)
    assert files[naming.path_in_repo(2, 5)] == shards[2].read_bytes()


def test_transient_faults_are_retried_until_published(hub_server, settings, shards):
    # commit and paths-info: retried by our policy; the LFS PUT: retried inside huggingface_hub.
    hub_server.add_fault("commit", 500, times=2)
    hub_server.add_fault("paths_info", 503, times=2)
    hub_server.add_fault("lfs_upload", 500, times=2)
    _publish(settings, shards)
    assert hub_server.counts["commit"] == 2 + 2 and hub_server.commits == 2
    assert hub_server.uploads == 5
    assert hub_server.files(REPO_ID)[naming.path_in_repo(0, 5)] == shards[0].read_bytes()


def test_a_server_that_always_fails_leaves_a_one_line_error(hub_server, hub_token, settings, shards):
    api, target = make_api(settings), make_target(settings)
    retry = RetryPolicy.from_settings(settings)
    create_repo(api, target, private=True, retry=retry)
    before = shards[0].read_bytes()
    hub_server.add_fault("paths_info", 500)
    with pytest.raises(LineageError) as err:
        preupload_shard(api, target, shards[0], naming.path_in_repo(0, 5), retry=retry)
    message = str(err.value)
    assert "after 4 attempt(s)" in message and "500" in message and "\n" not in message
    assert hub_token not in message
    assert hub_server.counts["paths_info"] == 4 and hub_server.uploads == 0
    assert shards[0].read_bytes() == before


def test_commits_for_1000_shards_stay_within_eleven(hub_server, settings, tmp_path):
    template = make_shard(tmp_path / "template.parquet", 0, rows=1)
    content = template.read_bytes()
    shards = []
    for i in range(1000):  # distinct tiny files; only their bytes matter here, nothing parses them
        path = tmp_path / "many" / f"shard-{i:05d}.parquet"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content + i.to_bytes(2, "big"))
        shards.append(path)
    hub_server.page_size = 100  # make the listing paginate
    start = time.monotonic()
    result = _publish(settings, shards, card=False)
    card = CommitItem.from_bytes("README.md", b"---\nconfigs: []\n---\n# card\n")
    commit_items(result["api"], result["target"], [card], message="card", retry=RetryPolicy(0))
    elapsed = time.monotonic() - start
    assert hub_server.uploads == 1000
    assert hub_server.commits == 11  # ceil(1000 / 100) shard commits + 1 card commit: the limit
    assert len(hub_server.files(REPO_ID)) == 1000 + 2  # shards, README.md, .gitattributes
    print(f"1000 shards: {hub_server.commits} commits, {elapsed:.1f}s")


def test_token_from_cached_login(hub_server, settings, shards, monkeypatch, tmp_path, hub_token):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    token_file = tmp_path / "login" / "token"
    token_file.parent.mkdir()
    token_file.write_text(hub_token)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    _publish(settings, shards[:1])
    assert hub_server.commits == 2


def test_no_token_or_offline_is_a_clear_error(settings, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "absent"))
    with pytest.raises(LineageError, match="HF_TOKEN"):
        make_api(settings)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LineageError, match="HF_HUB_OFFLINE"):
        make_api(settings)


def test_wrong_token_fails_without_retry_and_without_echoing_it(hub_server, settings, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrong")
    api, target = make_api(settings), make_target(settings)
    with pytest.raises(LineageError) as err:
        create_repo(api, target, private=True, retry=RetryPolicy.from_settings(settings))
    assert "401" in str(err.value) and "hf_wrongwrongwrong" not in str(err.value)
    assert hub_server.counts["create_repo"] == 1


def test_other_revision_gets_a_branch(hub_server, hub_env, shards):
    settings = HubSettings(repo_id=REPO_ID, endpoint=hub_server.url, revision="v1", backoff_seconds=0.01)
    _publish(settings, shards[:2])
    repo = hub_server.repo(REPO_ID)
    assert set(repo.branches) == {"main", "v1"}
    assert naming.path_in_repo(0, 2) in hub_server.files(REPO_ID, revision="v1")
    assert naming.path_in_repo(0, 2) not in hub_server.files(REPO_ID, revision="main")


def test_xet_is_what_the_client_would_use_unless_disabled(hub_server, hub_env, shards):
    """huggingface_hub 2.4.0 with hf_xet installed uploads through Xet, never LFS: the
    package must switch it off (the test Hub refuses Xet, as it implements LFS only)."""
    settings = HubSettings(repo_id=REPO_ID, endpoint=hub_server.url, use_xet=True, retries=0)
    api, target = make_api(settings), make_target(settings)
    create_repo(api, target, private=True, retry=RetryPolicy(0))
    with pytest.raises(LineageError, match="xet-write-token"):
        preupload_shard(api, target, shards[0], naming.path_in_repo(0, 5), retry=RetryPolicy(0))
    assert hub_server.counts["xet"] == 1 and hub_server.uploads == 0
    make_api(HubSettings(repo_id=REPO_ID, endpoint=hub_server.url))  # back to LFS for later tests


KD_DIGEST = """
import json, sys
import numpy as np
from logit_lineage.kd import CompressedLogitsDataset, collate
source = sys.argv[1] if len(sys.argv) == 2 else sys.argv[1:]
ds = CompressedLogitsDataset(source)
items = sorted(ds, key=lambda it: it["index"])
batch = collate(items[:4])
print(json.dumps({"vocab": ds.vocab_size, "params": ds.params["top_p"],
                  "items": [[it["index"], {k: float(np.asarray(v, dtype=np.float64).sum())
                                           for k, v in sorted(it.items()) if k != "index"}] for it in items],
                  "batch_mask": int(batch["targets"].mask.sum())}))
"""


def test_kd_dataset_streams_published_shards_through_datasets(hub_server, hub_env, settings, shards):
    """logit_lineage.kd reads a published repo with `datasets` streaming (params from the card)
    and yields exactly what it yields from the local shards."""
    _publish(settings, shards)
    env = {**os.environ, **hub_env, "HF_DATASETS_OFFLINE": "0", "HF_HUB_OFFLINE": "0"}
    remote = subprocess.run([sys.executable, "-c", KD_DIGEST, REPO_ID], env=env, capture_output=True, text=True,
                            timeout=300)
    assert remote.returncode == 0, remote.stderr[-3000:]
    local = subprocess.run([sys.executable, "-c", KD_DIGEST, *map(str, shards)], capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    got, want = json.loads(remote.stdout), json.loads(local.stdout)
    assert len(got["items"]) == 20 and got == want
