"""Expert and gating checkpoints: one safetensors file with the model's config in its header.

safetensors stores tensors only and executes nothing on load, unlike a pickled `.pt`.
The header metadata (string to string) holds:
- `format`: "logit-lineage/expert-checkpoint", `format_version`: "1";
- `kind`: "expert" or "gating";
- `config`: JSON of everything needed to rebuild the module (sizes, loss, expert order...).
A reader refuses a file of another format, version or kind instead of guessing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.envelope import check_envelope
from logit_lineage.formats.safetensors_file import save_sorted

FORMAT = "logit-lineage/expert-checkpoint"
FORMAT_VERSION = "1"
KINDS = ("expert", "gating")


def save_checkpoint(path: str | os.PathLike, tensors: dict, config: dict, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": json.dumps(config, sort_keys=True),
    }
    # safetensors refuses shared or non-contiguous storage; clone into plain tensors.
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    save_sorted(plain, path, metadata=metadata)


def load_checkpoint(path: str | os.PathLike, kind: str) -> tuple[dict, dict]:
    """Return (tensors, config); one-line error naming the file and key when it is not ours."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise LineageError("no such file", path=path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise LineageError(f"not a readable safetensors file ({exc})", path=path) from None
    check_envelope(metadata, path=path, format=FORMAT, version=FORMAT_VERSION, where="metadata",
                   what="expert checkpoint")
    if metadata.get("kind") != kind:
        raise LineageError(f"metadata key 'kind' is {metadata.get('kind')!r}, expected {kind!r}", path=path)
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError):
        raise LineageError("metadata key 'config' is missing or not JSON", path=path) from None
    return tensors, config
