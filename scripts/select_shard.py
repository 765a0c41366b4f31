#!/usr/bin/env python
"""Write one shard's rows (index, num_tokens, num_assistant_tokens), sorted by
length, from the shard plan of make_shards.py."""
from __future__ import annotations

import click
import pyarrow.compute as pc

from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.distill.lengths import read_shard_plan, write_shard_rows


@click.command(help=__doc__)
@click.option("--plan", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--shard", type=click.IntRange(min=0), required=True)
@click.option("--output", type=click.Path(dir_okay=False), required=True)
@main_guard
def main(plan, shard, output):
    table, n_shards = read_shard_plan(plan)
    if shard >= n_shards:
        raise LineageError(f"shard {shard} does not exist: the plan has {n_shards} shards", path=plan)
    rows = table.filter(pc.equal(table.column("shard"), shard))
    write_shard_rows(output, {c: rows.column(c) for c in ("index", "num_tokens", "num_assistant_tokens")})
    log.info("shard %d: %d examples, %d tokens", shard, rows.num_rows, pc.sum(rows.column("num_tokens")).as_py() or 0)


if __name__ == "__main__":
    main()
