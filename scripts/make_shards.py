#!/usr/bin/env python
"""Order kept examples by token length and cut them into N shards of ~equal token sums.

Writes the shard plan: every kept example with its shard number, sorted by
length within each shard (select_shard.py writes one shard's rows from it).
N comes from config, so the DAG is static: every shard exists (possibly empty)
and a dry run shows them all. One plan file instead of N outputs of one job
keeps snakemake's DAG building linear in N.
"""
from __future__ import annotations

import click
import numpy as np

from logit_lineage.common.cli import log, main_guard
from logit_lineage.distill.lengths import read_lengths, write_shard_plan
from logit_lineage.teacher.batching import balanced_cuts


@click.command(help=__doc__)
@click.option("--lengths", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--n-shards", type=click.IntRange(min=1), required=True)
@click.option("--output", type=click.Path(dir_okay=False), required=True, help="Shard plan parquet.")
@main_guard
def main(lengths, n_shards, output):
    df = read_lengths(lengths).to_pandas()
    kept = df[df["skip_reason"].isna()].sort_values(["num_tokens", "index"], kind="stable")
    parts = balanced_cuts(kept["num_tokens"].to_numpy(), n_shards)
    shard = np.zeros(len(kept), dtype=np.int32)
    for i, rows in enumerate(parts):
        shard[rows] = i
    cols = {c: kept[c].to_numpy() for c in ("index", "num_tokens", "num_assistant_tokens")}
    write_shard_plan(output, cols | {"shard": shard}, n_shards)
    sums = [int(kept["num_tokens"].to_numpy()[r].sum()) for r in parts]
    log.info("%d examples in %d shards; tokens per shard min %d max %d (max/mean %.3f)", len(kept), n_shards,
             min(sums), max(sums), max(sums) / max(np.mean(sums), 1))


if __name__ == "__main__":
    main()
