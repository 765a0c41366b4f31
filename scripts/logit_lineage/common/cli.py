"""What every click script does around its work: logging and one-line failures."""
from __future__ import annotations

import functools
import logging
import sys
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
