#!/usr/bin/env python
"""Generate the embedded default's conversation dataset (deterministic, offline)."""
from __future__ import annotations

import click

from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.demo.conversations import make_dataset
from logit_lineage.demo.dataset_file import write_conversations


@click.command(help=__doc__ + "\n\nWrites a parquet with a `messages` column (list of {role, content}).")
@click.option("--n", "n_conversations", type=click.IntRange(min=1), required=True, help="Number of chats.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True)
@click.option("--think-fraction", type=click.FloatRange(0, 1), default=schema_defaults("demo")["think_fraction"],
              show_default=True, help="Fraction of assistant turns that open with a <think>…</think> span.")
@click.option("--output", type=click.Path(dir_okay=False), required=True)
@main_guard
def main(n_conversations, seed, think_fraction, output):
    convs = make_dataset(n_conversations, seed, think_fraction)
    write_conversations(output, convs)
    turns = sum(sum(m["role"] == "assistant" for m in c) for c in convs)
    log.info("wrote %d conversations (%d assistant turns) to %s", len(convs), turns, output)


if __name__ == "__main__":
    main()
