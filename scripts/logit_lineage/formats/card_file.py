"""The Hub dataset card (`README.md`): a YAML header between `---` lines, then Markdown.

The header is what the Hub and `datasets` read: `configs` tells `load_dataset`
which files form which split; `logit_lineage` holds the extraction parameters,
the compressed-logits format version and the lineage (teacher, dataset, config
hash), so a published repo describes itself without the workflow that made it.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from logit_lineage.common.atomic import write_text
from logit_lineage.common.errors import LineageError

CARD_KEY = "logit_lineage"
_FENCE = "---"


def render_card(metadata: dict, body: str) -> str:
    """The card text: YAML header (keys in the given order) and the Markdown body."""
    # Non-ASCII is escaped: raw NEL or LINE SEPARATOR characters would read back as line breaks.
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=False, width=1000)
    return f"{_FENCE}\n{header}{_FENCE}\n\n{body.strip()}\n"


def parse_card(text: str, *, source: str = "<card>") -> tuple[dict, str]:
    """Split a card into (metadata, body); a missing or broken header is an error."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != _FENCE:
        raise LineageError("dataset card has no YAML header (first line must be '---')", path=source)
    for end in range(1, len(lines)):
        if lines[end].strip() == _FENCE:
            break
    else:
        raise LineageError("dataset card YAML header is not closed by '---'", path=source)
    try:
        metadata = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        raise LineageError(f"dataset card YAML header does not parse: {exc}", path=source) from None
    if not isinstance(metadata, dict):
        raise LineageError("dataset card YAML header is not a mapping", path=source)
    return metadata, "".join(lines[end + 1:]).lstrip("\n")


def write_card(path: str | Path, metadata: dict, body: str) -> str:
    text = render_card(metadata, body)
    parse_card(text, source=str(path))  # refuse to write a card we could not read back
    write_text(path, text)
    return text


def read_card(path: str | Path) -> tuple[dict, str]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise LineageError("dataset card not found", path=path) from None
    return parse_card(text, source=str(path))
