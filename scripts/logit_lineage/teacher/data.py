"""Conversation datasets (a local parquet/jsonl/json file or a Hub dataset id) and
`Row`, one tokenized dataset row as the teacher's forward takes it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from logit_lineage.common.errors import LineageError
from logit_lineage.common.locations import check_local_or_hub

LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass
class Row:
    index: int
    ids: np.ndarray
    kept: np.ndarray  # positions t whose distribution (from t−1) is stored


def _read_local(path: Path):
    """A local file as an Arrow table, read directly: `datasets`' file builders expand
    `$VARS` and `~` in data_files, so a path with a `$` in it would name another file."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_table(path)
    try:
        return pj.read_json(path)  # JSON Lines
    except pa.ArrowInvalid:
        if path.suffix != ".json":
            raise
        import json

        rows = json.loads(path.read_text())  # one JSON array of rows
        if not isinstance(rows, list):
            raise LineageError("a .json dataset must be JSON Lines or one array of rows", path=path) from None
        return pa.Table.from_pylist(rows)


def load_conversations(dataset: str, *, split: str = "train", config: str | None = None,
                       column: str = "messages", limit: int | None = None):
    """A `datasets.Dataset` with a `column` of chat messages (rows addressed by index)."""
    import datasets

    path = Path(dataset)
    try:
        if path.suffix in LOCAL_SUFFIXES:
            if not path.exists():
                raise LineageError("dataset file does not exist", path=path)
            ds = datasets.Dataset(_read_local(path))
        else:
            check_local_or_hub(dataset, "dataset", repo_type="dataset", local_hint=(
                "point distill.dataset at a local .parquet, .jsonl or .json file (or a folder of such files)"))
            ds = datasets.load_dataset(dataset, config, split=split)
    except LineageError:
        raise
    except Exception as exc:  # datasets raises many types; report one line
        first = str(exc).splitlines()[0]
        # pyarrow's JSON reader counts rows from 0 as well: add the line an editor shows.
        first = re.sub(r"\bin row (\d+)\b",
                       lambda m: f"in row {m.group(1)} (counted from 0: line {int(m.group(1)) + 1})", first)
        raise LineageError(f"cannot load dataset '{dataset}': {first}") from None
    if column not in ds.column_names:
        raise LineageError(f"dataset '{dataset}' has no column '{column}' (columns: {ds.column_names})")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.select_columns([column])
