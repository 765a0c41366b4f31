"""Expert logits on disk: `<expert>/<split>_logits.npz`, with the legacy `.pt` layout as a fallback.

The npz holds three arrays:

- `logits`      [N, C] float32: the expert's raw (unadjusted) class scores;
- `targets`     [N]    int64:   the true labels;
- `predictions` [N]    int64:   argmax of `logits` (kept for the users' older tools).

Older runs (the users' original experts code) wrote one float16 tensor per split under other names
(`tuneV_logits.pt` with a capital V, `val_lt_logits.pt`, `test_lt_logits.pt`), without
targets. Readers try the npz first and fall back to those names; a `.pt` is only ever
opened with `torch.load(weights_only=True)`, because a full unpickle runs whatever code
the file carries.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError

SPLITS = ("tunev", "val", "test")
NPZ_KEYS = ("logits", "targets", "predictions")
# The legacy names, exactly as the old training code wrote them (note `tuneV`, `_lt`).
LEGACY_PT_NAMES = {
    "tunev": "tuneV_logits.pt",
    "val": "val_lt_logits.pt",
    "test": "test_lt_logits.pt",
}


@dataclass(frozen=True)
class ExpertLogits:
    """One expert's scores on one split, and where they were read from."""

    logits: np.ndarray  # [N, C] float32
    targets: np.ndarray  # [N] int64
    predictions: np.ndarray  # [N] int64
    path: Path

    @property
    def n(self) -> int:
        return int(self.logits.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[1])


def npz_name(split: str) -> str:
    return f"{split}_logits.npz"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise LineageError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")


def _checked(logits, targets, predictions, path: Path) -> ExpertLogits:
    """Validate shapes, dtypes and ranges; every failure names the file and the key."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise LineageError(f"key 'logits' must be [N, C] with N >= 1, C >= 2, got shape {list(logits.shape)}", path=path)
    if not np.issubdtype(logits.dtype, np.floating):
        raise LineageError(f"key 'logits' must be floating point, got {logits.dtype}", path=path)
    logits = logits.astype(np.float32, copy=False)
    if not np.isfinite(logits).all():
        raise LineageError("key 'logits' holds NaN or infinite values", path=path)
    n, c = logits.shape
    out = {}
    for key, arr in (("targets", targets), ("predictions", predictions)):
        arr = np.asarray(arr)
        if arr.shape != (n,):
            raise LineageError(f"key '{key}' must have shape [{n}] to match 'logits' {list(logits.shape)}, got {list(arr.shape)}", path=path)
        if not np.issubdtype(arr.dtype, np.integer):
            raise LineageError(f"key '{key}' must be integer class ids, got {arr.dtype}", path=path)
        if n and (arr.min() < 0 or arr.max() >= c):
            raise LineageError(f"key '{key}' has class ids outside [0, {c})", path=path)
        out[key] = arr.astype(np.int64, copy=False)
    return ExpertLogits(logits, out["targets"], out["predictions"], Path(path))


def write_npz(path: str | os.PathLike, logits: np.ndarray, targets: np.ndarray, predictions: np.ndarray | None = None) -> ExpertLogits:
    """Write one split atomically; `predictions` defaults to argmax of `logits`."""
    path = Path(path)
    logits = np.asarray(logits, dtype=np.float32)
    if predictions is None and logits.ndim == 2:
        predictions = logits.argmax(axis=1)
    record = _checked(logits, targets, predictions, path)
    with atomic_path(path) as tmp:
        # np.savez would append ".npz" to a name without it; an open handle keeps the temp name.
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, logits=record.logits, targets=record.targets, predictions=record.predictions)
    return record


def read_npz(path: str | os.PathLike) -> ExpertLogits:
    """Read and validate one `<split>_logits.npz` (no pickles: allow_pickle=False)."""
    path = Path(path)
    if not path.is_file():
        raise LineageError("no such file", path=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise LineageError(f"missing key '{missing[0]}' (expected keys {', '.join(NPZ_KEYS)}; found {', '.join(data.files) or 'none'})", path=path)
            arrays = {k: data[k] for k in NPZ_KEYS}
    except LineageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise LineageError(f"not a readable npz file ({exc})", path=path) from None
    return _checked(arrays["logits"], arrays["targets"], arrays["predictions"], path)


def read_legacy_pt(path: str | os.PathLike, targets: np.ndarray | None = None) -> ExpertLogits:
    """Read a legacy `.pt`: a [N, C] tensor (usually float16) or a dict with 'logits' (+ 'targets').

    Loaded with weights_only=True: a pickle that would construct arbitrary objects is refused.
    Legacy tensors carry no labels, so `targets` must come from the data split.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise LineageError("no such file", path=path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise LineageError(f"refused to load: not a plain tensor file (weights_only=True: {first})", path=path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise LineageError(f"not a readable torch file ({exc})", path=path) from None
    file_targets = None
    if isinstance(obj, dict):
        if "logits" not in obj:
            raise LineageError(f"missing key 'logits' (found {', '.join(map(str, obj)) or 'none'})", path=path)
        file_targets = obj.get("targets")
        obj = obj["logits"]
    if not isinstance(obj, torch.Tensor):
        raise LineageError(f"expected a logits tensor, got {type(obj).__name__}", path=path)
    logits = obj.detach().to(torch.float32).numpy()
    if file_targets is not None:
        file_targets = np.asarray(file_targets.numpy() if isinstance(file_targets, torch.Tensor) else file_targets)
        if targets is not None and (file_targets.shape != np.shape(targets) or not np.array_equal(file_targets, targets)):
            raise LineageError("key 'targets' disagrees with the labels of the data split", path=path)
        targets = file_targets
    if targets is None:
        raise LineageError("legacy .pt files carry no key 'targets': give the split's labels", path=path)
    if logits.ndim == 2 and np.shape(targets) != (logits.shape[0],):
        raise LineageError(f"key 'logits' has {logits.shape[0]} rows but the split has {np.shape(targets)[0] if np.ndim(targets) else 0} labels", path=path)
    predictions = logits.argmax(axis=1) if logits.ndim == 2 else np.zeros(0, np.int64)
    return _checked(logits, targets, predictions, path)


def locate(expert_dir: str | os.PathLike, split: str) -> Path:
    """The file a reader will use for `split`: the npz if present, else the legacy `.pt`."""
    _check_split(split)
    expert_dir = Path(expert_dir)
    for candidate in (expert_dir / npz_name(split), expert_dir / LEGACY_PT_NAMES[split]):
        if candidate.is_file():
            return candidate
    raise LineageError(
        f"no logits for split '{split}': expected {npz_name(split)} or legacy {LEGACY_PT_NAMES[split]}",
        path=expert_dir,
    )


def read_split(expert_dir: str | os.PathLike, split: str, targets: np.ndarray | None = None) -> ExpertLogits:
    """Read one expert's split, npz first, then the legacy `.pt` (which needs `targets`).

    When `targets` is given and the npz has its own, they must agree: a mismatch means the
    logits belong to a different ordering of the split.
    """
    path = locate(expert_dir, split)
    if path.suffix == ".npz":
        record = read_npz(path)
        if targets is not None and (record.targets.shape != np.shape(targets) or not np.array_equal(record.targets, targets)):
            raise LineageError("key 'targets' disagrees with the labels of the data split (different order or split?)", path=path)
        return record
    return read_legacy_pt(path, targets)


def stack_experts(records: dict[str, ExpertLogits]) -> tuple[np.ndarray, np.ndarray]:
    """Stack several experts' logits on one split into [N, E, C] with the shared targets.

    Experts must agree on N, on C and on the targets, row by row.
    """
    if not records:
        raise LineageError("no experts given")
    names = list(records)
    ref = records[names[0]]
    for name in names[1:]:
        rec = records[name]
        if rec.n_classes != ref.n_classes:
            raise LineageError(f"key 'logits' has {rec.n_classes} classes but {ref.path} has {ref.n_classes}", path=rec.path)
        if rec.n != ref.n:
            raise LineageError(f"key 'logits' has N={rec.n} rows but {ref.path} has N={ref.n}", path=rec.path)
        if not np.array_equal(rec.targets, ref.targets):
            raise LineageError(f"key 'targets' differs from {ref.path} (experts must see the same rows in the same order)", path=rec.path)
    logits = np.stack([records[n].logits for n in names], axis=1)
    return logits, ref.targets
