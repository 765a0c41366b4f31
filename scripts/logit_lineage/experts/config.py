"""Turn the `experts` config section (passed to scripts as JSON) into typed specs.

The workflow validates the section against workflow/schemas/experts.schema.yaml first; this
module only re-checks what a hand-run script could get wrong, with one-line errors that
name the config key. Keys a hand-run script leaves out take the schema's defaults: the
spec dataclasses read theirs from it (common.schema), so it stays their one home.
"""
from __future__ import annotations

import dataclasses
import json

from logit_lineage.common.errors import LineageError
from logit_lineage.experts.losses import LOSSES


def parse_json(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineageError(f"option {option}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise LineageError(f"option {option}: expected a JSON object, got {type(value).__name__}")
    return value


def build(cls, section: dict, key: str, **extra):
    """cls(**section) keeping only cls's fields; unknown keys are an error naming the key.

    Keys the section leaves out take cls's defaults, which are the schema's.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise LineageError(f"unknown config key '{key}.{unknown[0]}' (known: {', '.join(sorted(names))})")
    values = dict(section)
    values.update(extra)
    return cls(**values)


def check_expert_names(names, key: str = "experts.experts") -> list[str]:
    names = list(names)
    for i, name in enumerate(names):
        if name not in LOSSES:
            raise LineageError(f"unknown expert '{name}' at config key '{key}.{i}' (expected one of {', '.join(LOSSES)})")
    if len(set(names)) != len(names):
        raise LineageError(f"config key '{key}' names an expert twice: {', '.join(names)}")
    if not names:
        raise LineageError(f"config key '{key}' is empty")
    return names
