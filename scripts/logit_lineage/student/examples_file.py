"""The student chain's example list (`student/examples.parquet`): which conversations of the
shards each run trains on and which are held out, with their full token ids.

One row per example, ascending `index`:
    index      int64         row of the source dataset (the shards' `index`)
    split      string        "train" or "heldout"
    input_ids  list<int32>   the conversation tokenized with the teacher's chat template
Key-value metadata `logit_lineage.student_examples`: JSON with `format`
("logit-lineage-student-examples"), `format_version` (1), the split settings
(`heldout_every`, `heldout_max_examples`, `max_train_examples`), `vocab_size` and the
`shards` (file names) it was made from. Readers refuse another format or version.

Written once (prepare_student_data.py) and read by every training job, so the runs share
the split and the tokenization and no job tokenizes again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.envelope import check_envelope

FORMAT = "logit-lineage-student-examples"
FORMAT_VERSION = 1
META_KEY = b"logit_lineage.student_examples"
SPLITS = ("train", "heldout")
SCHEMA = pa.schema([
    pa.field("index", pa.int64()),
    pa.field("split", pa.string()),
    pa.field("input_ids", pa.list_(pa.int32())),
])


def write_examples(path: str | Path, train: list[dict], heldout: list[dict], info: dict) -> None:
    """`train` / `heldout`: items with "index" and "input_ids"; `info`: settings for the metadata."""
    rows = sorted([(int(it["index"]), "train", it["input_ids"]) for it in train]
                  + [(int(it["index"]), "heldout", it["input_ids"]) for it in heldout])
    table = pa.table({
        "index": pa.array([r[0] for r in rows], pa.int64()),
        "split": pa.array([r[1] for r in rows], pa.string()),
        "input_ids": pa.array([np.asarray(r[2], dtype=np.int32) for r in rows], pa.list_(pa.int32())),
    }, schema=SCHEMA)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **info}
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_examples(path: str | Path) -> tuple[dict[int, tuple[str, np.ndarray]], dict]:
    """({index: (split, input_ids int64)}, metadata)."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise LineageError("no such student examples file", path=path) from None
    except pa.ArrowInvalid as exc:
        raise LineageError(f"not a parquet file ({exc})", path=path) from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise LineageError(f"no key '{META_KEY.decode()}' in the parquet metadata: not a student examples file",
                           path=path)
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise LineageError(f"metadata key {META_KEY.decode()} is not JSON", path=path) from None
    check_envelope(meta, path=path, format=FORMAT, version=FORMAT_VERSION, where="parquet metadata",
                   what="student examples file")
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise LineageError(f"missing column(s) {', '.join(missing)}", path=path)
    index = table.column("index").to_numpy()
    split = table.column("split").to_pylist()
    ids = table.column("input_ids").combine_chunks()
    offsets, values = ids.offsets.to_numpy(), ids.values.to_numpy().astype(np.int64)
    out = {}
    for r, (i, s) in enumerate(zip(index, split)):
        if s not in SPLITS:
            raise LineageError(f"row {r} (example {i}): split {s!r}, expected one of {SPLITS}", path=path)
        if int(i) in out:
            raise LineageError(f"row {r}: example {i} is listed twice", path=path)
        out[int(i)] = (s, values[offsets[r] : offsets[r + 1]])
    return out, meta
