"""The conversation dataset parquet: one row per chat, column `messages`
(list of {role, content} strings) — the layout Hub chat datasets use."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from logit_lineage.common.atomic import atomic_path

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([("messages", pa.list_(MESSAGE))])


def write_conversations(path: str | Path, conversations: list[list[dict]]) -> None:
    table = pa.Table.from_pydict({"messages": conversations}, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
