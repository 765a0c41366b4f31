"""Credentials out of every message: token values and presigned upload URLs.

The token comes only from `HF_TOKEN` or the cached login (`hf auth login`), read by
huggingface_hub itself; what this module knows of it is only what to cut out.
Both the client module (hub.target) and the retry loop (hub.retry) import it, so
neither has to import the other.
"""
from __future__ import annotations

import os
import re

# Upload URLs on the Hub are presigned: their query string is a short-lived credential.
_QUERY = re.compile(r"(https?://[^\s?]+)\?[^\s)'\"]*")


def current_token() -> str | None:
    """The token huggingface_hub would send (environment or cached login), if any."""
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # a broken login must not leak through an odd traceback
        return None


def _secrets() -> list[str]:
    values = [os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"), current_token()]
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every known credential value replaced by `***`."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def scrub(text: str) -> str:
    """`text` without credentials: token values and presigned query strings."""
    return redact(_QUERY.sub(r"\1?…", text))


class ScrubFilter:
    """A logging filter: rewrites each record with credentials and presigned query strings removed."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
