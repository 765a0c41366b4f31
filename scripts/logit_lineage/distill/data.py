"""Conversation datasets: a local parquet/jsonl/json file or a Hub dataset id."""
from __future__ import annotations

from pathlib import Path

from logit_lineage.common.errors import LineageError

LOCAL_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def load_conversations(dataset: str, *, split: str = "train", config: str | None = None,
                       column: str = "messages", limit: int | None = None):
    """A `datasets.Dataset` with a `column` of chat messages (rows addressed by index)."""
    import datasets

    path = Path(dataset)
    try:
        if path.suffix in LOCAL_BUILDERS:
            if not path.exists():
                raise LineageError("dataset file does not exist", path=path)
            ds = datasets.load_dataset(LOCAL_BUILDERS[path.suffix], data_files=str(path), split="train")
        else:
            ds = datasets.load_dataset(dataset, config, split=split)
    except LineageError:
        raise
    except Exception as exc:  # datasets raises many types; report one line
        raise LineageError(f"cannot load dataset '{dataset}': {str(exc).splitlines()[0]}") from None
    if column not in ds.column_names:
        raise LineageError(f"dataset '{dataset}' has no column '{column}' (columns: {ds.column_names})")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.select_columns([column])
