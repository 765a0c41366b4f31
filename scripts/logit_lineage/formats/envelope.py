"""The one check of a file's envelope: which format it is, and which version of it.

Every format of the project names itself in a key-value header (a JSON object, a
safetensors `__metadata__`, parquet key-value metadata), each with its own key names,
which stay as they are on disk. Readers call :func:`check_envelope` with those names;
a file of another format or version is refused with one line naming the file, the
key, what was found and what was expected.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logit_lineage.common.errors import LineageError


def _shown(found: Any, expected: Any) -> str:
    # Same type: the bare value reads best ("format version 1"); another type is
    # shown as a literal, so '1' (a string) is not mistaken for 1.
    return str(found) if type(found) is type(expected) else repr(found)


def check_envelope(
    obj: Any,
    *,
    path: object,
    version: Any,
    format: str | None = None,
    format_key: str = "format",
    version_key: str = "format_version",
    where: str = "JSON",
    what: str | None = None,
) -> Any:
    """Refuse `obj` unless `obj[format_key] == format` and `obj[version_key] == version`.

    `format=None` checks the version alone (a format that names itself only by its
    version key). `where` says what `obj` is in the file ("JSON", "parquet metadata",
    …); `what` is the noun phrase of the error ("not a <what>"), by default
    "<format> file". Returns the version found (== `version`).
    """
    what = what or f"{format} file"
    first_key = format_key if format is not None else version_key
    if not isinstance(obj, Mapping):
        raise LineageError(f"{where} is a {type(obj).__name__}, not an object with key '{first_key}': not {_a(what)}",
                           path=path)
    if format is not None:
        if format_key not in obj:
            raise LineageError(f"no '{format_key}' key in {where}: not {_a(what)}", path=path)
        if obj[format_key] != format:
            raise LineageError(
                f"{where} key '{format_key}' is {obj[format_key]!r}, expected {format!r}: not {_a(what)}", path=path)
    if version_key not in obj:
        raise LineageError(f"no '{version_key}' key in {where}: not {_a(what)}", path=path)
    found = obj[version_key]
    if found != version or type(found) is not type(version):
        raise LineageError(
            f"format version {_shown(found, version)}, this reader understands {version} "
            f"({where} key '{version_key}')", path=path)
    return found


def _a(what: str) -> str:
    """'a logits file', 'an expert checkpoint'."""
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"
