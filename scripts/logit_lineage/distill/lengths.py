"""Token-length table and length-sorted shard row lists (parquet).

lengths.parquet: one row per dataset example — `index`, `num_tokens`,
`num_assistant_tokens` (kept positions), `skip_reason` (null when kept,
else e.g. "too_long" or "no_assistant_tokens").
plan.parquet: every kept example with its `shard` (int32), in shard order and, within a
shard, sorted by length; metadata `n_shards`.
shard-XXXXX.parquet (rows): the kept examples of one shard sorted by length —
`index`, `num_tokens`, `num_assistant_tokens`.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError

LENGTHS_SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("num_tokens", pa.int32()),
    ("num_assistant_tokens", pa.int32()),
    ("skip_reason", pa.string()),
])
SHARD_SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("num_tokens", pa.int32()),
    ("num_assistant_tokens", pa.int32()),
])

PLAN_SCHEMA = SHARD_SCHEMA.append(pa.field("shard", pa.int32()))


def _write(path, table: pa.Table, meta: dict | None) -> None:
    if meta:
        table = table.replace_schema_metadata({k.encode(): str(v).encode() for k, v in meta.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _read(path, schema: pa.Schema, what: str) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise LineageError(f"not a readable parquet file ({exc})", path=path) from None
    got = table.schema.remove_metadata()
    if not got.equals(schema):
        raise LineageError(f"not a {what} table: columns {got.names}, expected {schema.names}", path=path)
    return table


def write_lengths(path: str | Path, columns: dict, meta: dict | None = None) -> None:
    _write(path, pa.Table.from_pydict(columns, schema=LENGTHS_SCHEMA), meta)


def read_lengths(path: str | Path) -> pa.Table:
    return _read(path, LENGTHS_SCHEMA, "lengths")


def write_shard_rows(path: str | Path, columns: dict, meta: dict | None = None) -> None:
    _write(path, pa.Table.from_pydict(columns, schema=SHARD_SCHEMA), meta)


def read_shard_rows(path: str | Path) -> pa.Table:
    return _read(path, SHARD_SCHEMA, "shard rows")


def write_shard_plan(path: str | Path, columns: dict, n_shards: int) -> None:
    _write(path, pa.Table.from_pydict(columns, schema=PLAN_SCHEMA), {"n_shards": n_shards})


def read_shard_plan(path: str | Path) -> tuple[pa.Table, int]:
    table = _read(path, PLAN_SCHEMA, "shard plan")
    try:
        n_shards = int((table.schema.metadata or {})[b"n_shards"])
    except (KeyError, ValueError):
        raise LineageError("shard plan lacks its 'n_shards' metadata", path=path) from None
    return table, n_shards
