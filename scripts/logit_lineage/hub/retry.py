"""Retry a Hub step with exponential backoff on transient errors only.

Transient: HTTP 408/429/5xx, timeouts, dropped connections. Anything else
(401/403/404, a malformed answer) fails at once: waiting does not fix it. The
final failure is a one-line LineageError with the token scrubbed out.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from logit_lineage.common.errors import LineageError, one_line
from logit_lineage.common.schema import defaults_from_schema
from logit_lineage.hub.redact import scrub
from logit_lineage.hub.settings import HubSettings

log = logging.getLogger("logit_lineage.hub")
T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_REASON = 400


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind `exc` (huggingface_hub wraps some errors in RuntimeError)."""
    for err in _chain(exc):
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    import httpx2

    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    return any(
        isinstance(err, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError,
                         ConnectionError, TimeoutError))
        for err in _chain(exc)
    )


def retry_after_seconds(exc: BaseException) -> float | None:
    for err in _chain(exc):
        response = getattr(err, "response", None)
        headers = getattr(response, "headers", None)
        if headers is not None and headers.get("Retry-After"):
            try:
                return max(0.0, float(headers["Retry-After"]))
            except ValueError:
                return None
    return None


def describe(exc: BaseException) -> str:
    """One short line: status and the Hub's message, or the exception type."""
    status = http_status(exc)
    # The innermost HTTP error says most (the wrappers only say "upload failed").
    inner = next((e for e in _chain(exc) if getattr(e, "response", None) is not None), exc)
    text = one_line(inner) or type(inner).__name__
    if status is not None and str(status) not in text:
        text = f"HTTP {status}: {text}"
    elif status is None:
        text = f"{type(inner).__name__}: {text}"
        causes = list(_chain(exc))
        if len(causes) > 1:  # "upload failed" wrappers: the innermost cause says why
            root = causes[-1]
            text += f" ({type(root).__name__}: {one_line(root)})"
    text = scrub(text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


@dataclass
@defaults_from_schema("hub")  # retries, backoff_seconds, backoff_max_seconds
class RetryPolicy:
    retries: int
    backoff_seconds: float
    backoff_max_seconds: float
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_settings(cls, settings: HubSettings) -> "RetryPolicy":
        return cls(settings.retries, settings.backoff_seconds, settings.backoff_max_seconds)

    def wait_before(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait before attempt `attempt + 1` (exponential, capped, a little jitter)."""
        wait = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        hinted = retry_after_seconds(exc)
        if hinted is not None:
            wait = min(self.backoff_max_seconds, max(wait, hinted))
        # Jitter keeps parallel shard jobs that hit the same 429 from retrying in lockstep.
        return wait * (1 + 0.1 * random.random())

    def call(self, what: str, fn: Callable[[], T]) -> T:
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except LineageError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one line
                if not is_transient(exc):
                    raise LineageError(f"hub: {what} failed: {describe(exc)}") from None
                if attempt == attempts:
                    raise LineageError(
                        f"hub: {what} failed after {attempts} attempt(s): {describe(exc)}"
                    ) from None
                wait = self.wait_before(attempt, exc)
                log.warning("hub: %s: %s; retry %d/%d in %.1fs", what, describe(exc), attempt,
                            self.retries, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")
