"""The `hub` config section as a typed object, with the schema's defaults.

Scripts receive the section as one JSON argument (as the rules pass it); keys the
config left out take their defaults from workflow/schemas/hub.schema.yaml, read at
import (common.schema), so the schema stays their one home.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema

REPO_TYPES = ("dataset",)
_CREDENTIAL_KEY = re.compile(r"token|secret|password", re.IGNORECASE)


@dataclass(frozen=True)
@defaults_from_schema("hub")
class HubSettings:
    """One field per key of the schema; every default is the schema's."""

    repo_id: str | None
    repo_type: str
    revision: str
    private: bool
    shards_per_commit: int
    retries: int
    backoff_seconds: float
    backoff_max_seconds: float
    endpoint: str | None
    use_xet: bool
    local_jobs: bool

    @classmethod
    def from_mapping(cls, data: dict, *, source: str = "hub") -> "HubSettings":
        if not isinstance(data, dict):
            raise LineageError(f"{source}: expected a mapping of hub settings")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if _CREDENTIAL_KEY.search(str(key)):
                raise LineageError(
                    f"{source}.{key}: credentials are never read from config; "
                    "set HF_TOKEN or log in with `hf auth login`"
                )
            if key not in known:
                raise LineageError(f"{source}.{key}: unknown key (expected one of {sorted(known)})")
        settings = cls(**data)
        settings._check(source)
        return settings

    @classmethod
    def from_json(cls, text: str, *, source: str = "--hub") -> "HubSettings":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LineageError(f"{source}: not valid JSON ({exc.msg})") from None
        return cls.from_mapping(data, source=source)

    def _check(self, source: str) -> None:
        if self.repo_type not in REPO_TYPES:
            raise LineageError(f"{source}.repo_type: expected one of {REPO_TYPES}, got {self.repo_type!r}")
        if not 1 <= int(self.shards_per_commit) <= 100:
            raise LineageError(
                f"{source}.shards_per_commit: expected 1..100 (the Hub limits commits per hour), "
                f"got {self.shards_per_commit}"
            )
        if self.retries < 0 or self.backoff_seconds < 0 or self.backoff_max_seconds < 0:
            raise LineageError(f"{source}: retries and backoff times must be >= 0")
        if self.repo_id is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.repo_id):
            raise LineageError(f"{source}.repo_id: expected 'namespace/name', got {self.repo_id!r}")

    def require_repo_id(self) -> str:
        if not self.repo_id:
            raise LineageError(
                "hub.repo_id is not set: publishing is off (set hub.repo_id to 'namespace/name' to publish)"
            )
        return self.repo_id
