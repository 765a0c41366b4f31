"""Hub receipts: small JSON files that record what the Hugging Face Hub confirmed.

A receipt is written only after the Hub answered success, so its presence means
"this step is done on the Hub". Three kinds share one envelope:

- ``repo``:   the repository exists (create_repo answered) at ``revision``;
- ``shard``:  one local file's content is on the Hub's LFS store (or already
              committed at ``path_in_repo``), with its sha256 and size;
- ``commit``: a commit (or the confirmation that none was needed) that put
              ``files`` at their paths; ``commit`` is the Hub's commit id.

No receipt ever holds a credential: the token lives only in ``HF_TOKEN`` or the
cached login, and :func:`write_receipt` refuses keys that look like one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from logit_lineage.common.atomic import write_json
from logit_lineage.common.errors import LineageError
from logit_lineage.common.json_file import read_json

RECEIPT_VERSION = 1
KINDS = ("repo", "shard", "commit")

# Fields every receipt carries, then the fields of each kind (name -> accepted types).
_COMMON = {
    "receipt_version": (int,),
    "kind": (str,),
    "repo_id": (str,),
    "repo_type": (str,),
    "revision": (str,),
    "endpoint": (str,),
}
_FIELDS = {
    "repo": {"url": (str,), "private": (bool,), "commit": (str,)},
    "shard": {
        "path_in_repo": (str,),
        "local_path": (str,),
        "sha256": (str,),
        "size": (int,),
        "transfer": (str,),  # "lfs" (content pre-uploaded) or "regular" (sent inline at commit)
        "uploaded": (bool,),  # False when the Hub already had this content at this path
        "commit": (str, type(None)),  # the commit that already holds it, if any
    },
    "commit": {"commit": (str,), "created": (bool,), "files": (list,)},
}
_FILE_FIELDS = {"path_in_repo": (str,), "sha256": (str,), "size": (int,), "status": (str,)}
FILE_STATUSES = ("added", "updated", "unchanged")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FORBIDDEN_KEY = re.compile(r"token|secret|password|authorization", re.IGNORECASE)


def make_receipt(kind: str, **fields: Any) -> dict:
    """Build a receipt dict of `kind` and check it (raises LineageError on a bad field)."""
    receipt = {"receipt_version": RECEIPT_VERSION, "kind": kind, **fields}
    validate_receipt(receipt, source="<new receipt>")
    return receipt


def validate_receipt(receipt: object, *, source: str, kind: str | None = None) -> dict:
    if not isinstance(receipt, dict):
        raise LineageError("expected a JSON object (a hub receipt)", path=source)
    if receipt.get("receipt_version") != RECEIPT_VERSION:
        raise LineageError(
            f"key 'receipt_version': expected {RECEIPT_VERSION}, got {receipt.get('receipt_version')!r}",
            path=source,
        )
    got_kind = receipt.get("kind")
    if got_kind not in KINDS or (kind is not None and got_kind != kind):
        expected = kind or " or ".join(KINDS)
        raise LineageError(f"key 'kind': expected {expected}, got {got_kind!r}", path=source)
    spec = {**_COMMON, **_FIELDS[got_kind]}
    for key, types in spec.items():
        if key not in receipt:
            raise LineageError(f"missing key '{key}' in a {got_kind} receipt", path=source)
        if not _is_instance(receipt[key], types):
            raise LineageError(
                f"key '{key}': expected {'/'.join(t.__name__ for t in types)}, "
                f"got {type(receipt[key]).__name__}",
                path=source,
            )
    for key in receipt:
        if key not in spec:
            raise LineageError(f"unexpected key '{key}' in a {got_kind} receipt", path=source)
        if _FORBIDDEN_KEY.search(key):
            raise LineageError(f"key '{key}' looks like a credential; receipts never hold one", path=source)
    if got_kind == "shard":
        _check_sha256(receipt["sha256"], source, "sha256")
    if got_kind == "commit":
        for row, entry in enumerate(receipt["files"]):
            where = f"files[{row}]"
            if not isinstance(entry, dict) or set(entry) != set(_FILE_FIELDS):
                raise LineageError(f"key '{where}': expected keys {sorted(_FILE_FIELDS)}", path=source)
            for key, types in _FILE_FIELDS.items():
                if not _is_instance(entry[key], types):
                    raise LineageError(f"key '{where}.{key}': wrong type", path=source)
            _check_sha256(entry["sha256"], source, f"{where}.sha256")
            if entry["status"] not in FILE_STATUSES:
                raise LineageError(
                    f"key '{where}.status': expected one of {FILE_STATUSES}, got {entry['status']!r}",
                    path=source,
                )
    return receipt


def _is_instance(value: object, types: tuple) -> bool:
    # bool is an int subclass; a size of `true` is a broken receipt, not 1 byte.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _check_sha256(value: str, source: str, key: str) -> None:
    if not _SHA256.match(value):
        raise LineageError(f"key '{key}': expected 64 lowercase hex digits", path=source)


def write_receipt(path: str | Path, receipt: dict) -> None:
    """Validate, then write atomically (a failed step never leaves a receipt)."""
    validate_receipt(receipt, source=str(path))
    write_json(path, receipt)


def read_receipt(path: str | Path, kind: str | None = None) -> dict:
    receipt = read_json(path, "receipt")
    return validate_receipt(receipt, source=str(path), kind=kind)
