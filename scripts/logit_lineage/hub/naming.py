"""Where each shard goes in the repo, and which shards share a commit."""
from __future__ import annotations

import math
import re
from pathlib import Path

from logit_lineage.common.errors import LineageError

CARD_PATH = "README.md"
_LOCAL_SHARD = re.compile(r"shard-(\d{5})\.parquet$")


def path_in_repo(index: int, n_shards: int) -> str:
    """`data/train-00003-of-00004.parquet` (the names `datasets` splits by)."""
    if not 0 <= index < n_shards:
        raise LineageError(f"shard index {index} outside 0..{n_shards - 1}")
    return f"data/train-{index:05d}-of-{n_shards:05d}.parquet"


def data_files_glob(n_shards: int) -> str:
    """The card's `configs` pattern: pinned to this shard count, so files left by an
    earlier run with another count are not read as part of this dataset."""
    return f"data/train-*-of-{n_shards:05d}.parquet"


def shard_index(local_path: str | Path) -> int:
    """The index in a local shard name `…/shard-00003.parquet`."""
    match = _LOCAL_SHARD.search(Path(local_path).name)
    if not match:
        raise LineageError("expected a shard file named shard-NNNNN.parquet", path=local_path)
    return int(match.group(1))


def n_batches(n_shards: int, shards_per_commit: int) -> int:
    return math.ceil(n_shards / shards_per_commit)


def batch_members(batch: int, n_shards: int, shards_per_commit: int) -> range:
    """Shard indices committed together by commit job `batch` (at most 100 per commit)."""
    if not 0 <= batch < n_batches(n_shards, shards_per_commit):
        raise LineageError(f"commit batch {batch} outside 0..{n_batches(n_shards, shards_per_commit) - 1}")
    start = batch * shards_per_commit
    return range(start, min(n_shards, start + shards_per_commit))
