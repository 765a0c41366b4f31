"""The three publishing steps: create the repo, pre-upload a shard, commit files.

Each returns the fields of a receipt; the caller writes it only after the step
returned, i.e. after the Hub confirmed. Every step first asks the Hub what it
already holds (paths-info), so a rerun sends no bytes and makes no commit for
content the Hub has at the same path with the same sha256.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from logit_lineage.common.errors import LineageError
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.target import RepoTarget

log = logging.getLogger("logit_lineage.hub")
PATHS_INFO_BATCH = 500  # the Hub answers at most 1,000 paths per paths-info request
_GIT_HASH_LIMIT = 64 << 20  # non-LFS (git) blobs are small; never read a big file to git-hash it


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _git_blob_oid(path: str | Path | None, content: bytes | None) -> str:
    from huggingface_hub.utils.sha import git_hash

    if content is None:
        content = Path(path).read_bytes()
    return git_hash(content)


def remote_entries(api, target: RepoTarget, paths: list[str], *, expand: bool = False) -> dict:
    """{path: RepoFile} for the paths that exist at the target revision (folders skipped)."""
    from huggingface_hub.hf_api import RepoFile

    found = {}
    for start in range(0, len(paths), PATHS_INFO_BATCH):
        chunk = paths[start:start + PATHS_INFO_BATCH]
        for entry in api.get_paths_info(target.repo_id, chunk, expand=expand, revision=target.revision,
                                         repo_type=target.repo_type):
            if isinstance(entry, RepoFile):
                found[entry.path] = entry
    return found


def same_content(entry, *, sha256: str, size: int, local_path=None, content: bytes | None = None) -> bool:
    """Whether a remote file holds exactly this content (LFS: sha256; git blob: its oid)."""
    if entry is None or entry.size != size:
        return False
    if entry.lfs is not None:
        return entry.lfs.sha256 == sha256
    if size > _GIT_HASH_LIMIT:
        return False
    return entry.blob_id == _git_blob_oid(local_path, content)


def head_commit(api, target: RepoTarget) -> str:
    info = api.repo_info(target.repo_id, repo_type=target.repo_type, revision=target.revision)
    return info.sha


# --- step 1: the repo -------------------------------------------------------------------------

def create_repo(api, target: RepoTarget, *, private: bool, retry: RetryPolicy) -> dict:
    """Create the repo (and the branch, if not main) unless it exists; return the head commit."""
    url = retry.call(
        f"create repo {target.describe()}",
        lambda: api.create_repo(target.repo_id, repo_type=target.repo_type, private=private, exist_ok=True),
    )
    if target.revision != "main":
        retry.call(
            f"create branch {target.describe()}",
            lambda: api.create_branch(target.repo_id, branch=target.revision, repo_type=target.repo_type,
                                      exist_ok=True),
        )
    commit = retry.call(f"read head of {target.describe()}", lambda: head_commit(api, target))
    return {"url": str(url), "private": bool(private), "commit": commit}


# --- step 2: one shard's content --------------------------------------------------------------

def preupload_shard(api, target: RepoTarget, local_path: str | Path, path_in_repo: str, *,
                    retry: RetryPolicy) -> dict:
    """Put the shard's bytes in the repo's LFS store (no commit yet).

    Skipped when the Hub already has this content at `path_in_repo`. The bytes
    travel once; the commit job later only names them by sha256.
    """
    from huggingface_hub import CommitOperationAdd

    local_path = Path(local_path)
    if not local_path.is_file():
        raise LineageError("shard not found", path=local_path)
    size = local_path.stat().st_size
    sha256 = sha256_file(local_path)
    where = f"{path_in_repo} in {target.describe()}"

    remote = retry.call(f"look up {where}",
                        lambda: remote_entries(api, target, [path_in_repo], expand=True))
    entry = remote.get(path_in_repo)
    fields = {"path_in_repo": path_in_repo, "local_path": str(local_path), "sha256": sha256, "size": size}
    if same_content(entry, sha256=sha256, size=size, local_path=local_path):
        commit = entry.last_commit.oid if entry.last_commit else None
        log.info("hub: %s already holds this content (sha256 %s…); nothing to upload", where, sha256[:12])
        return {**fields, "transfer": "lfs" if entry.lfs else "regular", "uploaded": False, "commit": commit}

    def attempt() -> str:
        # A fresh operation per attempt: huggingface_hub mutates it while uploading.
        op = CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(local_path))
        op.upload_info.sha256 = bytes.fromhex(sha256)  # already computed; spares a second read
        api.preupload_lfs_files(target.repo_id, additions=[op], repo_type=target.repo_type,
                                revision=target.revision, free_memory=False)
        # huggingface_hub records the Hub's preupload answer (ignored? LFS or plain git
        # file?) only on these attributes of the operation.
        if op._should_ignore:
            raise LineageError(f"the repo's .gitignore ignores {path_in_repo}; nothing was uploaded")
        return "lfs" if op._upload_mode == "lfs" else "regular"

    transfer = retry.call(f"pre-upload {where}", attempt)
    if transfer == "regular":
        log.info("hub: the Hub stores %s as a plain git file; its content goes with the commit", where)
    else:
        log.info("hub: pre-uploaded %s (%d bytes, sha256 %s…)", where, size, sha256[:12])
    return {**fields, "transfer": transfer, "uploaded": transfer == "lfs", "commit": None}


# --- step 3: commits --------------------------------------------------------------------------

@dataclass(frozen=True)
class CommitItem:
    """One file of a commit: a local file (known sha256 and size) or bytes (the card)."""

    path_in_repo: str
    sha256: str
    size: int
    local_path: str | None = None
    content: bytes | None = None

    @classmethod
    def from_bytes(cls, path_in_repo: str, content: bytes) -> "CommitItem":
        return cls(path_in_repo, hashlib.sha256(content).hexdigest(), len(content), content=content)

    def operation(self):
        from huggingface_hub import CommitOperationAdd

        if self.content is not None:
            return CommitOperationAdd(path_in_repo=self.path_in_repo, path_or_fileobj=self.content)
        op = CommitOperationAdd(path_in_repo=self.path_in_repo, path_or_fileobj=self.local_path)
        # The receipt's sha256 names the content already pre-uploaded; the commit only
        # references it, so the file is not read again (the size check guards edits).
        op.upload_info.sha256 = bytes.fromhex(self.sha256)
        return op

    def check_local(self) -> None:
        if self.local_path is None:
            return
        try:
            size = os.path.getsize(self.local_path)
        except FileNotFoundError:
            raise LineageError("shard named by a receipt is missing", path=self.local_path) from None
        if size != self.size:
            raise LineageError(
                f"shard changed since its receipt ({size} bytes now, {self.size} in the receipt); "
                "rerun its pre-upload", path=self.local_path)


def commit_items(api, target: RepoTarget, items: list[CommitItem], *, message: str,
                 retry: RetryPolicy) -> dict:
    """Commit the items the Hub does not already hold; one commit at most.

    Returns {"commit", "created", "files"}: with nothing to change no commit is made
    and `commit` is the revision's head, which already holds every file.
    """
    if not items:
        raise LineageError("nothing to commit: no files given")
    for item in items:
        item.check_local()
    paths = [item.path_in_repo for item in items]
    if len(set(paths)) != len(paths):
        raise LineageError("two files of one commit share a path in the repo")

    def attempt() -> dict:
        # Re-read the Hub's state on every attempt: if a previous attempt's commit
        # went through but its answer was lost, this one finds the files unchanged.
        remote = remote_entries(api, target, paths)
        statuses, operations = [], []
        for item in items:
            entry = remote.get(item.path_in_repo)
            if same_content(entry, sha256=item.sha256, size=item.size, local_path=item.local_path,
                            content=item.content):
                status = "unchanged"
            else:
                status = "updated" if entry is not None else "added"
                operations.append(item.operation())
            statuses.append(status)
        if operations:
            info = api.create_commit(target.repo_id, operations, commit_message=message,
                                     repo_type=target.repo_type, revision=target.revision)
            commit, created = info.oid, True
        else:
            commit, created = head_commit(api, target), False
        files = [
            {"path_in_repo": item.path_in_repo, "sha256": item.sha256, "size": item.size, "status": status}
            for item, status in zip(items, statuses)
        ]
        return {"commit": commit, "created": created, "files": files}

    result = retry.call(f"commit {len(items)} file(s) to {target.describe()}", attempt)
    changed = sum(f["status"] != "unchanged" for f in result["files"])
    if result["created"]:
        log.info("hub: commit %s adds/updates %d of %d file(s)", result["commit"][:12], changed, len(items))
    else:
        log.info("hub: the Hub already holds all %d file(s) at %s; no commit", len(items), result["commit"][:12])
    return result
