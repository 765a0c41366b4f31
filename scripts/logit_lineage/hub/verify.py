"""Check a published repo against the local shards: every file there, same bytes.

By default the check trusts the Hub's own record of each file (LFS sha256 and
size from paths-info); with `download=True` it also fetches every file and
hashes what came back.
"""
from __future__ import annotations

import fnmatch
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.card_file import CARD_KEY, parse_card
from logit_lineage.hub.naming import CARD_PATH
from logit_lineage.hub.publish import head_commit, remote_entries, same_content, sha256_file
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.target import RepoTarget

log = logging.getLogger("logit_lineage.hub")


@dataclass(frozen=True)
class Expected:
    local_path: str
    path_in_repo: str


def _download(api, target: RepoTarget, path_in_repo: str, folder: Path) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(target.repo_id, path_in_repo, repo_type=target.repo_type,
                                revision=target.revision, endpoint=api.endpoint, local_dir=folder))


def verify_repo(api, target: RepoTarget, expected: list[Expected], *, retry: RetryPolicy,
                download: bool = False, check_card: bool = True) -> dict:
    """A report of the repo's state; a LineageError (one line) if any file is off."""
    paths = [e.path_in_repo for e in expected] + ([CARD_PATH] if check_card else [])
    remote = retry.call(f"list {len(paths)} path(s) in {target.describe()}",
                        lambda: remote_entries(api, target, paths))
    commit = retry.call(f"read head of {target.describe()}", lambda: head_commit(api, target))
    problems, files = [], []
    with tempfile.TemporaryDirectory(prefix="hub-verify-") as tmp:
        for item in tqdm(expected, desc="verify", unit="file", disable=len(expected) < 50):
            sha256 = sha256_file(item.local_path)
            size = Path(item.local_path).stat().st_size
            entry = remote.get(item.path_in_repo)
            if entry is None:
                problems.append(f"{item.path_in_repo}: missing on the Hub")
                continue
            if not same_content(entry, sha256=sha256, size=size, local_path=item.local_path):
                remote_sha = entry.lfs.sha256 if entry.lfs else f"git:{entry.blob_id}"
                problems.append(
                    f"{item.path_in_repo}: differs from {item.local_path} "
                    f"(local {size} B sha256 {sha256[:12]}, Hub {entry.size} B {remote_sha[:16]})")
                continue
            if download:
                got = retry.call(f"download {item.path_in_repo}",
                                 lambda: _download(api, target, item.path_in_repo, Path(tmp)))
                if sha256_file(got) != sha256:
                    problems.append(f"{item.path_in_repo}: downloaded bytes differ from {item.local_path}")
                    continue
                got.unlink()
            files.append({"path_in_repo": item.path_in_repo, "local_path": item.local_path,
                          "sha256": sha256, "size": size})
        card = _check_card(api, target, remote, expected, retry, Path(tmp), problems) if check_card else None
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LineageError(
            f"hub verify of {target.describe()}: {len(problems)} problem(s): "
            + "; ".join(problems[:3]) + more)
    log.info("hub: %s holds all %d shard(s) byte-identical to the local files", target.describe(),
             len(files))
    return {"repo_id": target.repo_id, "repo_type": target.repo_type, "revision": target.revision,
            "endpoint": target.endpoint, "commit": commit, "downloaded": download, "files": files,
            "card": card}


def _unexpected_data_files(api, target, patterns, expected: set[str], retry) -> list[str]:
    from huggingface_hub.hf_api import RepoFile

    folders = sorted({p.split("/", 1)[0] for p in patterns if isinstance(p, str) and "/" in p})
    found = []
    for folder in folders:
        entries = retry.call(f"list {folder}/ in {target.describe()}", lambda: list(api.list_repo_tree(
            target.repo_id, folder, recursive=True, revision=target.revision, repo_type=target.repo_type)))
        found += [e.path for e in entries if isinstance(e, RepoFile)]
    return sorted(p for p in found if p not in expected
                  and any(fnmatch.fnmatch(p, pat) for pat in patterns if isinstance(pat, str)))


def _check_card(api, target, remote, expected, retry, folder: Path, problems: list[str]) -> dict | None:
    if CARD_PATH not in remote:
        problems.append(f"{CARD_PATH}: missing on the Hub (no dataset card)")
        return None
    path = retry.call(f"download {CARD_PATH}", lambda: _download(api, target, CARD_PATH, folder))
    try:
        metadata, _ = parse_card(path.read_text(), source=f"{target.describe()}/{CARD_PATH}")
    except LineageError as exc:
        problems.append(str(exc))
        return None
    patterns = [df.get("path") for cfg in metadata.get("configs") or [] for df in cfg.get("data_files") or []
                if isinstance(df, dict)]
    unmatched = [e.path_in_repo for e in expected
                 if not any(isinstance(p, str) and fnmatch.fnmatch(e.path_in_repo, p) for p in patterns)]
    if unmatched:
        problems.append(f"{CARD_PATH}: configs data_files {patterns} do not cover {unmatched[0]}")
    extra = _unexpected_data_files(api, target, patterns, {e.path_in_repo for e in expected}, retry)
    if extra:
        problems.append(f"{extra[0]}: on the Hub and matched by the card's data_files, but not a local shard"
                        + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    if CARD_KEY not in metadata:
        problems.append(f"{CARD_PATH}: header lacks the '{CARD_KEY}' section")
    return {"data_files": patterns, "format_version": (metadata.get(CARD_KEY) or {}).get("format_version")}
