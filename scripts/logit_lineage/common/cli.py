"""What every click script does around its work: logging and one-line failures."""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable

import click

from logit_lineage.common.errors import LineageError, one_line

log = logging.getLogger("logit_lineage")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main_guard(func: Callable) -> Callable:
    """Run a click command body; turn LineageError into `error: …` and exit 1.

    Tracebacks are for bugs; bad input gets one line naming file, row or key.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_logging()
        try:
            return func(*args, **kwargs)
        except LineageError as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(1)

    return wrapper


class PathOrList(click.ParamType):
    """An existing file, or @LIST: every path in the text file LIST (one per line; blank
    lines ignored). Aggregate rules pass thousands of shards this way: a shell command is
    limited to 128 KiB, about 2,400 shard paths."""

    name = "PATH|@LIST"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value)
        if text.startswith("@"):
            listing = Path(text[1:])
            try:
                lines = listing.read_text().splitlines()
            except OSError as exc:
                self.fail(f"cannot read the list {listing}: {exc.strerror}", param, ctx)
            paths = [Path(line.strip()) for line in lines if line.strip()]
        else:
            listing, paths = None, [Path(text)]
        for path in paths:
            if not path.is_file():
                where = f" (listed in {listing})" if listing else ""
                self.fail(f"file {str(path)!r}{where} does not exist", param, ctx)
        return tuple(paths)


def _flatten(ctx, param, value):
    return tuple(p for group in value for p in group)


def paths_option(*decls, **kwargs):
    """A repeatable option of existing files, each value a path or @LIST (PathOrList);
    the command gets one flat tuple of Paths."""
    return click.option(*decls, type=PathOrList(), multiple=True, callback=_flatten, **kwargs)
