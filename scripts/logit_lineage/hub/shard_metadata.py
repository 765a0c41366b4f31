"""What the dataset card needs from each shard: format version, parameters, rows.

The format belongs to `codec.logits_parquet` (the distillation chain's); this module only asks it,
so a shard of an unknown format version fails here with the codec's own error.
"""
from __future__ import annotations

from pathlib import Path

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.logits import read_metadata


def read_shard_metadata(path: str | Path) -> dict:
    """{"format_version": int, "params": dict, "num_rows": int} of one shard."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise LineageError("shard not found", path=path)
    meta = dict(read_metadata(path))
    try:
        meta["num_rows"] = pq.read_metadata(path).num_rows
    except Exception as exc:  # noqa: BLE001 - any footer failure is a bad shard
        raise LineageError(f"not a readable parquet file ({exc})", path=path) from None
    return meta
