"""The long-tail classification data on disk: one npz per split and a classes JSON.

`<dir>/<split>.npz` (split in train, tunev, val, test):
- `x` [N, D] float32 features (may be absent when expert logits are imported instead of
  recomputed: then only the labels are needed);
- `y` [N] int64 class ids in [0, C).

`<dir>/classes.json`: `n_classes`, `class_counts` (training examples per class), `prior`
(class_counts / total), `head_threshold`, `groups` (0 = head: more than `head_threshold`
training examples, 1 = tail), `group_names`, and `source` (how the data was made).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from logit_lineage.common.atomic import atomic_path, write_json
from logit_lineage.common.errors import LineageError
from logit_lineage.common.json_file import read_json

DATA_SPLITS = ("train", "tunev", "val", "test")
CLASSES_KEYS = ("n_classes", "class_counts", "prior", "head_threshold", "groups", "group_names")


def write_split(path: str | os.PathLike, x: np.ndarray | None, y: np.ndarray) -> None:
    arrays = {"y": np.asarray(y, dtype=np.int64)}
    if x is not None:
        arrays["x"] = np.asarray(x, dtype=np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def read_split(path: str | os.PathLike, *, n_classes: int | None = None, need_x: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Read `x`, `y` of one split; every problem is one line naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise LineageError("no such file", path=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "y" not in data.files:
                raise LineageError(f"missing key 'y' (found {', '.join(data.files) or 'none'})", path=path)
            if need_x and "x" not in data.files:
                raise LineageError(f"missing key 'x' (found {', '.join(data.files)}); features are needed to train experts", path=path)
            y = data["y"]
            x = data["x"] if "x" in data.files else None
    except LineageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise LineageError(f"not a readable npz file ({exc})", path=path) from None
    if y.ndim != 1 or y.shape[0] == 0 or not np.issubdtype(y.dtype, np.integer):
        raise LineageError(f"key 'y' must be a non-empty 1-D integer array, got {y.dtype} {list(y.shape)}", path=path)
    if y.min() < 0 or (n_classes is not None and y.max() >= n_classes):
        raise LineageError(f"key 'y' has class ids outside [0, {n_classes})", path=path)
    if x is not None:
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise LineageError(f"key 'x' must be [N, D] with N = {y.shape[0]} (len of 'y'), got {list(x.shape)}", path=path)
        if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise LineageError(f"key 'x' must be finite floating point features, got {x.dtype}", path=path)
        x = x.astype(np.float32, copy=False)
    return x, y.astype(np.int64, copy=False)


def write_classes(path: str | os.PathLike, info: dict) -> None:
    write_json(path, info)


def read_classes(path: str | os.PathLike) -> dict:
    path = Path(path)
    info = read_json(path, "classes file")
    for key in CLASSES_KEYS:
        if key not in info:
            raise LineageError(f"missing key '{key}'", path=path)
    c = info["n_classes"]
    for key in ("class_counts", "prior", "groups"):
        if len(info[key]) != c:
            raise LineageError(f"key '{key}' has {len(info[key])} entries, expected n_classes = {c}", path=path)
    return info
