#!/usr/bin/env python
"""Tabulate and plot sort-grid evaluations.

Reads per-checkpoint evaluation JSONs (from evaluate_sort_model.py) and writes:
  --table    one row per checkpoint: run, configuration, mean and per-K exact match and
             token accuracy (format: scripts/codec/sort_table.py);
  --summary  one row per configuration and checkpoint, mean and std over seeds;
  --plot     PNG: generalization (mean exact match on the test K) vs training max K, and
             exact match per test K.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import main_guard


@click.command(help=__doc__)
@click.argument("evaluations", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--table", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Per-checkpoint CSV to write.")
@click.option("--summary", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Per-configuration CSV to write.")
@click.option("--plot", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@main_guard
def main(evaluations, table, summary, plot):
    from logit_lineage.sortgrid.eval_file import read_eval
    from logit_lineage.sortgrid.table import plot_grid, summary_rows, table_rows
    from logit_lineage.sortgrid.table_file import SUMMARY_COLUMNS, TABLE_COLUMNS, per_k_columns, write_csv

    records = [(str(p), read_eval(p)) for p in evaluations]
    rows, ks = table_rows(records)
    sums = summary_rows(rows)
    write_csv(table, [*TABLE_COLUMNS, *per_k_columns(ks)], rows)
    write_csv(summary, SUMMARY_COLUMNS, sums)
    plot_grid(rows, sums, ks, plot)
    for s in sums:
        click.echo(
            f"{'LN' if s['layernorm'] else 'noLN'} {s['regime']} K<={s['train_max_k']} L{s['n_layers']} "
            f"mlp{int(s['use_mlp'])} {s['length_mode']} {s['prefix']}@{s['iters']}: exact match "
            f"{s['exact_match_mean']:.3f}±{s['exact_match_std']:.3f} over {s['n_seeds']} seed(s)"
        )


if __name__ == "__main__":
    main()
