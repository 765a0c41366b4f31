#!/usr/bin/env python
"""Summarize the distillation chain over all shards: tokens, tokens/s, bytes/token, nucleus sizes, stored mass.

Reads every compressed-logits shard (--logits, repeatable) and, when given,
the extraction rule's benchmark TSV of each shard (--benchmark, repeatable,
matched to a shard by file stem: shard-00003.tsv ↔ shard-00003.parquet) for
its wall seconds. Writes a JSON (per shard and overall: kept tokens, tokens/s,
file bytes per token, nucleus-size mean/median/p99, fraction of tokens at the
nucleus cap, nucleus and stored probability mass; the nucleus-size and mass
histograms) and three plots: nucleus sizes with the capped fraction per shard,
the stored-mass distribution, and tokens/s and bytes/token per shard.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.atomic import atomic_path, write_json
from logit_lineage.common.cli import log, main_guard, paths_option
from logit_lineage.common.errors import LineageError
from logit_lineage.distill.summary import format_summary, plot_mass, plot_nucleus, plot_shards, summarize


@click.command(help=__doc__)
@paths_option("--logits", "shards", required=True,
              help="A compressed-logits shard, or @LIST: the shards listed in a file (repeatable).")
@paths_option("--benchmark", "benchmarks",
              help="The extraction benchmark TSV of a shard, same file stem, or @LIST (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@click.option("--nucleus-plot", type=click.Path(dir_okay=False), required=True,
              help="PNG: nucleus-size histogram and capped fraction per shard.")
@click.option("--mass-plot", type=click.Path(dir_okay=False), required=True,
              help="PNG: distribution of the nucleus and stored probability mass.")
@click.option("--shards-plot", type=click.Path(dir_okay=False), required=True,
              help="PNG: tokens/s and bytes/token per shard.")
@main_guard
def main(shards, benchmarks, json_path, nucleus_plot, mass_plot, shards_plot):
    stems = [Path(p).stem for p in shards]
    if len(set(stems)) != len(stems):
        raise LineageError(f"two --logits files share a file stem: {sorted(s for s in stems if stems.count(s) > 1)}")
    by_stem = {}
    for b in benchmarks:
        stem = Path(b).stem
        if stem not in stems:
            raise LineageError(f"benchmark has no shard of the same stem '{stem}' among --logits", path=b)
        by_stem[stem] = b
    summary = summarize(shards, by_stem)
    for path, plot in ((nucleus_plot, plot_nucleus), (mass_plot, plot_mass), (shards_plot, plot_shards)):
        with atomic_path(path) as tmp:
            plot(summary, tmp)
    write_json(json_path, summary)
    line = format_summary(summary)
    log.info("%s: %s", json_path, line)
    click.echo(line)


if __name__ == "__main__":
    main()
