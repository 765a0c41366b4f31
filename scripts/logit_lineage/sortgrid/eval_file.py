"""Per-checkpoint evaluation files of the sort grid (JSON).

    {
      "format": "sortgrid-eval", "version": 1,
      "checkpoint": "<path as given>",
      "run": {"layernorm": bool, "regime": "dynamic|fixed", "group": str, "task_id": int,
              "seed": int} or null when the file sits outside the grid tree,
      "name": {every field of codec.checkpoint_names.CheckpointName},
      "iters_done": int, "layout": "small|medium",
      "eval": {"samples_per_length": int, "seed": int, "teacher_forced": true},
      "per_k": [{"k": int, "exact_match": float, "token_accuracy": float, "n": int}, ...],
      "mean_exact_match": float, "mean_token_accuracy": float   # unweighted mean over K
    }
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from logit_lineage.common.atomic import write_json
from logit_lineage.common.errors import LineageError
from logit_lineage.common.json_file import read_json
from logit_lineage.formats.envelope import check_envelope

FORMAT = "sortgrid-eval"
VERSION = 1
REQUIRED = ("checkpoint", "run", "name", "iters_done", "layout", "eval", "per_k",
            "mean_exact_match", "mean_token_accuracy")


def write_eval(path: str | Path, record: dict[str, Any]) -> None:
    record = {"format": FORMAT, "version": VERSION, **record}
    check_eval(record, path)
    write_json(path, record)


def read_eval(path: str | Path) -> dict[str, Any]:
    record = read_json(path, "evaluation file")
    check_eval(record, path)
    return record


def check_eval(record: Any, path=None) -> None:
    check_envelope(record, path=path, format=FORMAT, version=VERSION, version_key="version",
                   what="sort-grid evaluation file")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise LineageError(f"missing key(s) {', '.join(missing)}", path=path)
    per_k = record["per_k"]
    if not isinstance(per_k, list) or not per_k:
        raise LineageError("key 'per_k' must be a non-empty list", path=path)
    for i, row in enumerate(per_k):
        if not isinstance(row, dict) or not {"k", "exact_match", "token_accuracy", "n"} <= set(row):
            raise LineageError(f"per_k[{i}] needs k, exact_match, token_accuracy, n", path=path)
        for key in ("exact_match", "token_accuracy"):
            if not 0.0 <= float(row[key]) <= 1.0:
                raise LineageError(f"per_k[{i}].{key}={row[key]} is not in [0, 1]", path=path)
