"""The one exception type scripts raise for bad input, and how it is reported."""
from __future__ import annotations


class LineageError(Exception):
    """Bad input or a failed external step, described in one line.

    The message names where (file, row or key) and what was expected; scripts
    print it as a single line and exit non-zero, without a traceback.
    """

    def __init__(self, message: str, *, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


def one_line(message: object) -> str:
    """Fold a message onto one line (error output is read line by line)."""
    return " ".join(str(message).split())


def row_where(source: object, index: int) -> str:
    """Where a dataset row is, for an error: its 0-based index (what `ds[i]` and the
    shard tables use) and the line an editor shows for it in a JSON Lines file."""
    return f"{source} row {index} (counted from 0: line {int(index) + 1} of a JSON Lines file)"
