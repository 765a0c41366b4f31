"""Checkpoint files (.pt): what a sort checkpoint holds, and safe reading of any .pt.

A sort checkpoint (as the original sort-grid runs wrote it) is a dict with exactly these keys:

    model_state_dict      name -> tensor, fused attention layout (see sortgrid.checkpoint_layout)
    optimizer_state_dict  torch.optim.AdamW.state_dict()
    config                the run's full configuration as plain data (str/int/float/bool/None,
                          lists and dicts of those): never a pickled class
    iters_done            optimizer steps completed when the file was written

Every file is read with `torch.load(..., weights_only=True)`, which cannot execute code
from the file. The original runs' own files pickled `config` as a `TrainConfig` dataclass, which
that loader refuses; for those (and only for classes named TrainConfig or GPTConfig) a
stand-in class with no behaviour receives the pickled fields, and they come back as a dict.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError

CHECKPOINT_KEYS = ("model_state_dict", "optimizer_state_dict", "config", "iters_done")
# Plain-data config classes that legacy files pickled; anything else stays refused.
LEGACY_CONFIG_CLASSES = ("TrainConfig", "GPTConfig")
# Where a state dict sits in the containers the layout inspector meets.
STATE_DICT_KEYS = ("model_state_dict", "model", "state_dict")


class _LegacyConfig:
    """Receives a pickled config dataclass's fields; has no methods that could run."""


@dataclass
class SortCheckpoint:
    model_state_dict: dict[str, torch.Tensor]
    optimizer_state_dict: dict
    config: dict
    iters_done: int


def _is_plain(value: Any) -> bool:
    # Exact types: a str or int subclass (e.g. torch's TorchVersion) pickles as its class,
    # which weights_only=True then refuses to load.
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) in (list, tuple):
        return all(_is_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain(v) for k, v in value.items())
    return False


def save_sort_checkpoint(
    path: str | Path,
    *,
    model_state_dict: dict[str, torch.Tensor],
    optimizer_state_dict: dict,
    config: dict,
    iters_done: int,
) -> None:
    """Write atomically; tensors are moved to CPU so the file loads anywhere."""
    if not _is_plain(config):
        raise LineageError("checkpoint config must be plain data (no objects)", path=path)
    payload = {
        "model_state_dict": OrderedDict(
            (k, v.detach().to("cpu").clone()) for k, v in model_state_dict.items()
        ),
        "optimizer_state_dict": _to_cpu(optimizer_state_dict),
        "config": dict(config),
        "iters_done": int(iters_done),
    }
    with atomic_path(path) as tmp:
        # Saving to a file object names the zip's inner folder "archive", not after the
        # temporary file, so the same checkpoint has the same bytes on every run.
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


def _legacy_to_plain(obj: Any) -> Any:
    if isinstance(obj, _LegacyConfig):
        return {k: _legacy_to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict) and not isinstance(obj, OrderedDict):
        return {k: _legacy_to_plain(v) for k, v in obj.items()}
    return obj


def load_torch_file(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` on CPU; failures become one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise LineageError("no such checkpoint file", path=path)
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a torch zip file at all
        raise LineageError(f"not a torch checkpoint ({type(exc).__name__}: {exc})", path=path) from None
    allowed = []
    for qualified in unsafe:
        if qualified.rsplit(".", 1)[-1] not in LEGACY_CONFIG_CLASSES:
            raise LineageError(
                f"refusing to load: it pickles {qualified}, which weights_only=True "
                "does not allow (re-save the checkpoint with plain-data contents)",
                path=path,
            )
        allowed.append((_LegacyConfig, qualified))
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise LineageError(f"cannot load with weights_only=True ({type(exc).__name__}: {exc})", path=path) from None
    return _legacy_to_plain(obj)


def find_state_dict(obj: Any, path: str | Path | None = None) -> tuple[str | None, dict[str, torch.Tensor]]:
    """The model weights in a loaded .pt: under a known key, or the file itself.

    Returns (container key or None for a bare state dict, state dict).
    """
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                return key, _tensor_dict(obj[key], path, key)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return None, _tensor_dict(obj, path, None)
    raise LineageError(
        f"no model weights found: expected a state dict or a dict with one of "
        f"{', '.join(STATE_DICT_KEYS)}",
        path=path,
    )


def _tensor_dict(sd: dict, path, key) -> dict[str, torch.Tensor]:
    for name, value in sd.items():
        if not isinstance(value, torch.Tensor):
            where = f"{key}.{name}" if key else name
            raise LineageError(f"key {where!r} is a {type(value).__name__}, not a tensor", path=path)
    return dict(sd)


def read_sort_checkpoint(path: str | Path) -> SortCheckpoint:
    """Load and check a sort checkpoint (any attention layout; see checkpoint_layout)."""
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise LineageError(f"expected a dict with keys {', '.join(CHECKPOINT_KEYS)}, got {type(obj).__name__}", path=path)
    missing = [k for k in CHECKPOINT_KEYS if k not in obj]
    if missing:
        raise LineageError(f"missing key(s) {', '.join(missing)} (a sort checkpoint has {', '.join(CHECKPOINT_KEYS)})", path=path)
    _, state = find_state_dict({"model_state_dict": obj["model_state_dict"]}, path)
    config = obj["config"]
    if not isinstance(config, dict) or not _is_plain(config):
        raise LineageError("key 'config' is not plain data", path=path)
    iters = obj["iters_done"]
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise LineageError(f"key 'iters_done' must be a non-negative int, got {iters!r}", path=path)
    if not isinstance(obj["optimizer_state_dict"], dict):
        raise LineageError("key 'optimizer_state_dict' is not a dict", path=path)
    return SortCheckpoint(state, obj["optimizer_state_dict"], config, iters)
