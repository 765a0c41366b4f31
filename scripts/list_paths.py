#!/usr/bin/env python
"""Write a list file: the paths of one per-shard output for every shard, one per line.

The aggregate rules (summaries, reports, students) read their shards from such a list
(`--logits @LIST`) instead of the command line, which a shell limits to 128 KiB (about
2,400 shard paths); their one input is the list, whose own inputs are the shards, so a
rebuilt shard still reruns them. --template names the files with {shard} standing for
the shard number, five digits (00000, 00001, …) as in every chain; each must exist.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.errors import LineageError


@click.command(help=__doc__)
@click.option("--template", required=True, help="Path of shard {shard}'s file, e.g. results/distill/logits/shard-{shard}.parquet.")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of shards.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="List file to write.")
@main_guard
def main(template, count, output):
    if "{shard}" not in template:
        raise LineageError(f"--template {template!r} has no {{shard}} placeholder")
    paths = [template.replace("{shard}", f"{i:05d}") for i in range(count)]
    for path in paths:
        if not Path(path).is_file():
            raise LineageError("no such file (is its shard built?)", path=path)
    with atomic_path(output) as tmp:
        Path(tmp).write_text("".join(f"{p}\n" for p in paths))
    log.info("%s: %d paths", output, count)


if __name__ == "__main__":
    main()
