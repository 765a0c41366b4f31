"""The sort-grid tables (CSV).

`sort_grid_table.csv`: one row per evaluated checkpoint, columns TABLE_COLUMNS followed
by `exact_k<K>` and `token_k<K>` for each test K (ascending).
`sort_grid_summary.csv`: one row per configuration and checkpoint iteration, aggregated
over seeds, columns SUMMARY_COLUMNS. Booleans are written as 0/1, floats with 6 decimals.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError

TABLE_COLUMNS = (
    "layernorm", "regime", "group", "task_id", "seed", "prefix", "iters",
    "n_layers", "use_mlp", "length_mode", "train_min_k", "train_max_k",
    "test_min_k", "test_max_k", "mean_exact_match", "mean_token_accuracy", "checkpoint",
)
SUMMARY_COLUMNS = (
    "layernorm", "regime", "train_max_k", "train_min_k", "n_layers", "use_mlp", "length_mode",
    "prefix", "iters", "n_seeds", "exact_match_mean", "exact_match_std",
    "token_accuracy_mean", "token_accuracy_std",
)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else str(value)


def write_csv(path: str | Path, columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    columns = list(columns)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            missing = [c for c in columns if c not in row]
            if missing:
                raise LineageError(f"row {i} lacks column(s) {', '.join(missing)}", path=path)
            writer.writerow([_cell(row[c]) for c in columns])


def per_k_columns(ks: Iterable[int]) -> list[str]:
    ks = sorted(ks)
    return [f"exact_k{k}" for k in ks] + [f"token_k{k}" for k in ks]


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
