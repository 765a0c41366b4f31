"""Is a configured name a local path or a Hugging Face Hub id, and can it be reached?

`from_pretrained` and `hf_hub_download` treat anything that is not an existing path as a
Hub id, so a mistyped directory fails far from its cause ("Repo id must be in the form
'repo_name' or 'namespace/repo_name'"), and a Hub id with the network off retries for
most of a minute. These checks run first and say what is wrong in one line:

- a value that can only be a path (it starts with `/`, `.` or `~`, has two or more `/`,
  or ends in a file suffix) and does not exist: "no such file or directory";
- a Hub id that is not in the local Hugging Face cache while `HF_HUB_OFFLINE` is set or
  the Hub's host does not answer: "the network is off", and how to use a local copy.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from logit_lineage.common.errors import LineageError

# A Hub id: `name` or `namespace/name` (letters, digits, `-`, `_`, `.`; at most 96 characters).
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
FILE_SUFFIXES = (".parquet", ".gguf", ".jsonl", ".json", ".safetensors", ".bin", ".pt", ".jinja", ".txt", ".npz")
TRUTHY = {"1", "true", "yes", "on"}
PROBE_TIMEOUT_S = 3.0


def is_path_like(value: str) -> bool:
    """True when `value` cannot be a Hub id, so only a local path is meant."""
    value = str(value)
    return (
        value.startswith(("/", ".", "~"))
        or value.count("/") >= 2
        or "\\" in value
        or value.lower().endswith(FILE_SUFFIXES)
        or not HUB_ID.match(value)
    )


def require_existing_path(value: str, what: str) -> Path:
    """`value` as an existing path, or a one-line "no such file or directory" naming `what`."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative to {os.getcwd()})"
        raise LineageError(f"{what} '{value}': no such file or directory{where}")
    return path


def offline_by_env() -> bool:
    """HF_HUB_OFFLINE as set now, or as huggingface_hub read it when it was imported."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) and "HF_HUB_OFFLINE" not in os.environ


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint's host accepts a TCP connection (one short try, no request)."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def in_hub_cache(repo_id: str, repo_type: str = "model") -> bool:
    """Whether the Hugging Face cache holds a snapshot of `repo_id` (offline loads can use it)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return False
    folder = Path(HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def check_hub_id(repo_id: str, what: str, *, repo_type: str = "model", local_hint: str) -> None:
    """Fail fast when `repo_id` must come from the Hub but the network is off (and it is not cached)."""
    if in_hub_cache(repo_id, repo_type):
        return
    if offline_by_env():
        why = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        why = f"{os.environ.get('HF_ENDPOINT') or 'https://huggingface.co'} does not answer"
    else:
        return
    raise LineageError(f"{what} '{repo_id}' is a Hugging Face Hub id, but the network is off ({why}) and it "
                       f"is not in the local cache: {local_hint}")


def check_local_or_hub(value: str, what: str, *, repo_type: str = "model", local_hint: str) -> str:
    """A path-looking `value` must exist; anything else is a Hub id that must be reachable.
    Returns "path" or "hub"."""
    value = str(value)
    if Path(value).expanduser().exists():
        return "path"
    if is_path_like(value):
        require_existing_path(value, what)
    check_hub_id(value, what, repo_type=repo_type, local_hint=local_hint)
    return "hub"
