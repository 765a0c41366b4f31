"""Which repo we publish to, the client that talks to it, and the credential rules.

The token comes only from `HF_TOKEN` or the cached login (`hf auth login`), read
by huggingface_hub itself; this package never takes it as an argument, never
stores it, and scrubs it from every message it prints (hub.redact).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from logit_lineage.common.errors import LineageError
from logit_lineage.hub.redact import ScrubFilter, current_token
from logit_lineage.hub.settings import HubSettings


@dataclass(frozen=True)
class RepoTarget:
    repo_id: str
    repo_type: str
    revision: str
    endpoint: str  # no credentials in it (see public_endpoint)

    def describe(self) -> str:
        return f"{self.repo_type}s/{self.repo_id}@{self.revision}"


def public_endpoint(url: str) -> str:
    """The endpoint as it may appear in receipts and logs (user:password@ removed)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def resolve_endpoint(settings: HubSettings) -> str:
    from huggingface_hub import constants

    # huggingface_hub reads HF_ENDPOINT once, at import; read it here again so the
    # environment of the job, not of an earlier import, decides.
    return (settings.endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def make_target(settings: HubSettings) -> RepoTarget:
    return RepoTarget(
        repo_id=settings.require_repo_id(),
        repo_type=settings.repo_type,
        revision=settings.revision,
        endpoint=public_endpoint(resolve_endpoint(settings)),
    )


def make_api(settings: HubSettings, *, require_token: bool = True):
    """An HfApi for the configured endpoint, after checking we may go online.

    Xet is off unless `use_xet`: plain Git LFS is the protocol our local test Hub
    implements, and every Hub still accepts it.
    """
    from huggingface_hub import HfApi, constants

    constants.HF_HUB_DISABLE_XET = not settings.use_xet
    if constants.is_offline_mode():
        raise LineageError(
            "HF_HUB_OFFLINE is set: publishing to the Hub needs the network "
            "(unset it, or run `make demo HF_HUB_OFFLINE=0`)"
        )
    if require_token and not current_token():
        raise LineageError(
            "no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
            "(tokens are never read from config)"
        )
    return HfApi(endpoint=resolve_endpoint(settings))


def target_fields(target: RepoTarget) -> dict:
    """The receipt fields that name where a step happened."""
    return {"repo_id": target.repo_id, "repo_type": target.repo_type, "revision": target.revision,
            "endpoint": target.endpoint}


def check_same_target(receipt: dict, target: RepoTarget, *, source: str) -> None:
    """A receipt from another repo, revision or endpoint proves nothing here."""
    for key, value in target_fields(target).items():
        if receipt.get(key) != value:
            raise LineageError(
                f"key '{key}': receipt is for {receipt.get(key)!r}, this run publishes to {value!r}; "
                "rerun the step that wrote it", path=source)


def secure_logging() -> None:
    """Logs carry no token and no presigned upload URL.

    Per-request lines (httpx2) are dropped; huggingface_hub's own warnings (which
    name the URL of a failed request) pass through a filter on every handler.
    """
    import logging

    from huggingface_hub.utils import logging as hf_logging

    logging.getLogger("httpx2").setLevel(logging.WARNING)
    scrub_filter = ScrubFilter()
    for logger in (logging.getLogger(), hf_logging.get_logger()):
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(scrub_filter)
