#!/usr/bin/env python
"""Order kept examples by token length and cut them into N shards of ~equal token sums.

Each shard file lists its examples (index, num_tokens, num_assistant_tokens)
sorted by length, ready for token-budget batching. N comes from config, so the
DAG is static: every shard exists (possibly empty) and a dry run shows them all.
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from codec.lengths import read_lengths, write_shard_rows
from common.cli import log, main_guard
from common.errors import LineageError
from distill.batching import balanced_cuts


@click.command(help=__doc__)
@click.option("--lengths", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--n-shards", type=click.IntRange(min=1), required=True)
@click.option("--output", "outputs", multiple=True, required=True,
              help="Shard file, once per shard in order (exactly --n-shards times).")
@main_guard
def main(lengths, n_shards, outputs):
    if len(outputs) != n_shards:
        raise LineageError(f"--output given {len(outputs)} times, expected --n-shards={n_shards}")
    df = read_lengths(lengths).to_pandas()
    kept = df[df["skip_reason"].isna()].sort_values(["num_tokens", "index"], kind="stable")
    parts = balanced_cuts(kept["num_tokens"].to_numpy(), n_shards)
    for out, rows in zip(outputs, parts):
        part = kept.iloc[rows]
        write_shard_rows(out, {c: part[c].to_numpy() for c in ("index", "num_tokens", "num_assistant_tokens")})
        log.info("%s: %d examples, %d tokens", Path(out).name, len(part), int(part["num_tokens"].sum()))
    sums = [int(kept["num_tokens"].to_numpy()[r].sum()) for r in parts]
    log.info("token sums per shard: %s (max/mean %.3f)", sums, max(sums) / max(np.mean(sums), 1))


if __name__ == "__main__":
    main()
