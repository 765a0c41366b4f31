"""Fidelity metric files: per shard (per-token columns) and the aggregate report.

Both are plain JSON objects with `format` and `format_version`:

- shard file (`{RESULTS}/fidelity/shards/shard-XXXXX.json`): `shard`, `params`
  (temperature, dense dtype, vocab_size, …), `sizes` (byte counts of the
  compressed shard and of the dense dump, token counts), `tokens` (columns:
  one list per metric, one value per sampled token, plus `example_idx` and
  `position`) and `summary` (statistics per metric);
- report (`{RESULTS}/fidelity/fidelity_report.json`): `headline` (the table),
  `overall` (statistics over every sampled token), `per_shard` (each shard's
  headline) and `params`.

docs/FIDELITY.md lists the metrics.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from logit_lineage.common.atomic import write_text
from logit_lineage.common.errors import LineageError
from logit_lineage.common.json_file import read_json
from logit_lineage.formats.envelope import check_envelope

SHARD_FORMAT = "logit-lineage.fidelity-shard"
REPORT_FORMAT = "logit-lineage.fidelity-report"
FORMAT_VERSION = 1
SHARD_KEYS = ("shard", "params", "sizes", "tokens", "summary")
REPORT_KEYS = ("headline", "overall", "per_shard", "params")


def _clean(obj):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return _clean(obj.item())
    return obj


def _write(path, fmt: str, obj: dict, keys) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise LineageError(f"{fmt} object lacks {missing}", path=path)
    body = {"format": fmt, "format_version": FORMAT_VERSION, **obj}
    write_text(path, json.dumps(_clean(body), indent=1, sort_keys=True, allow_nan=False) + "\n")


def _read(path, fmt: str, keys) -> dict:
    path = Path(path)
    obj = read_json(path, "fidelity metrics file")
    check_envelope(obj, path=path, format=fmt, version=FORMAT_VERSION)
    missing = [k for k in keys if k not in obj]
    if missing:
        raise LineageError(f"lacks keys {missing}", path=path)
    return obj


def write_shard_fidelity(path: str | os.PathLike, obj: dict) -> None:
    lengths = {len(v) for v in obj.get("tokens", {}).values()}
    if len(lengths) > 1:
        raise LineageError(f"token columns differ in length: {sorted(lengths)}", path=path)
    _write(path, SHARD_FORMAT, obj, SHARD_KEYS)


def read_shard_fidelity(path: str | os.PathLike) -> dict:
    obj = _read(path, SHARD_FORMAT, SHARD_KEYS)
    lengths = {len(v) for v in obj["tokens"].values()}
    if len(lengths) > 1:
        raise LineageError(f"token columns differ in length: {sorted(lengths)}", path=path)
    return obj


def write_fidelity_report(path: str | os.PathLike, obj: dict) -> None:
    _write(path, REPORT_FORMAT, obj, REPORT_KEYS)


def read_fidelity_report(path: str | os.PathLike) -> dict:
    return _read(path, REPORT_FORMAT, REPORT_KEYS)
