#!/usr/bin/env python
"""Turn the docstrings of installed packages into a chat dataset (offline, deterministic).

Each conversation asks "What does `package.name` do?" and answers with that object's
docstring (cleaned, cut at a paragraph end to at most --max-chars): assistant text that
no one in this project wrote, on every machine that has the packages. --n objects are
drawn with --seed from the public functions, classes and methods of --packages (sorted
by name; short, repeated or table-like docstrings left out); the same package versions
and options give the same file. Writes a parquet with a `messages` column, the layout of
the demo dataset and of Hub chat datasets.
"""
from __future__ import annotations

import click

from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.demo.dataset_file import write_conversations
from logit_lineage.distill.docstrings import docstring_conversations

DEFAULTS = schema_defaults("distill", "docstrings")


@click.command(help=__doc__)
@click.option("--packages", default=",".join(DEFAULTS["packages"]), show_default=True,
              help="Comma-separated importable packages or modules to read docstrings from.")
@click.option("--n", "n_conversations", type=click.IntRange(min=1), default=DEFAULTS["n"], show_default=True,
              help="Number of conversations.")
@click.option("--max-chars", type=click.IntRange(min=50), default=DEFAULTS["max_chars"], show_default=True,
              help="Longest answer in characters (cut at a paragraph end).")
@click.option("--min-chars", type=click.IntRange(min=1), default=DEFAULTS["min_chars"], show_default=True,
              help="Shorter docstrings are left out.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), required=True)
@main_guard
def main(packages, n_conversations, max_chars, min_chars, seed, output):
    names = [p.strip() for p in packages.split(",") if p.strip()]
    convs = docstring_conversations(names, n=n_conversations, seed=seed, max_chars=max_chars, min_chars=min_chars)
    write_conversations(output, convs)
    chars = sum(len(c[1]["content"]) for c in convs)
    log.info("wrote %d conversations (%d answer characters) from %s to %s", len(convs), chars, ", ".join(names),
             output)


if __name__ == "__main__":
    main()
