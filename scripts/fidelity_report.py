#!/usr/bin/env python
"""Fidelity of the compressed logits against dense teacher logits.

`shard`: for every entry of a dense dump, find the same token in the
compressed shard (same example index and position) and measure the record
against the dense logits: nucleus and stored mass, top-1 agreement, top-5
overlap, KL(dense ‖ reconstruction), max logit error after dequantization,
and the relative error of the cross-entropy estimated from nucleus +
importance-weighted tail samples against the exact one, for two fixed
students (the dense teacher at --temperature, and uniform). Writes per-token
columns and their statistics as JSON.

`aggregate`: combine shard files into the report JSON (headline table,
statistics over all tokens, per shard, bytes per token of the compressed
records vs dense bf16) and a PNG plot; prints the headline table.
docs/FIDELITY.md defines every metric.
"""
from __future__ import annotations

import click

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.cli import log, main_guard, paths_option
from logit_lineage.common.schema import schema_defaults
from logit_lineage.fidelity.metrics_file import read_shard_fidelity, write_fidelity_report, write_shard_fidelity
from logit_lineage.fidelity.report import aggregate as aggregate_shards
from logit_lineage.fidelity.report import compare_shard, format_headline, plot_report
from logit_lineage.formats.dense_dump import DenseDump
from logit_lineage.formats.logits import LogitsShard


@click.group(help=__doc__)
def cli():
    pass


@cli.command(help="Measure one shard's compressed records against its dense dump.")
@click.option("--dense", "dense_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Dense dump summary (.json.gz) from dump_dense_logits.py.")
@click.option("--logits", "logits_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Compressed logits parquet of the same shard.")
@click.option("--name", default=None, help="Shard name in the output (default: the parquet's stem).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True),
              default=schema_defaults("fidelity")["temperature"], show_default=True,
              help="Temperature of the teacher-derived student for the CE estimate.")
@click.option("--output", type=click.Path(dir_okay=False), required=True)
@main_guard
def shard(dense_path, logits_path, name, temperature, output):
    dump = DenseDump(dense_path)
    compressed = LogitsShard(logits_path)
    obj = compare_shard(dump, compressed, temperature=temperature,
                        shard_name=name or logits_path.rsplit("/", 1)[-1].removesuffix(".parquet"))
    write_shard_fidelity(output, obj)
    s = obj["summary"]
    log.info("%s: %d tokens, nucleus mass %.4f, top-1 %.4f, KL mean %.3e", output, s["kl"].get("n", 0),
             s["nucleus_mass"].get("mean", float("nan")), s["top1_agree"].get("mean", float("nan")),
             s["kl"].get("mean", float("nan")))


@cli.command(help="Combine shard fidelity files into the report JSON and plot.")
@paths_option("--input", "inputs", required=True, help="A shard's fidelity JSON, or @LIST of them (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), required=True)
@main_guard
def aggregate(inputs, json_path, plot_path):
    shards = [read_shard_fidelity(p) for p in inputs]
    report = aggregate_shards(shards)
    with atomic_path(plot_path) as tmp:
        plot_report(shards, report, tmp, float(report["params"]["temperature"]))
    write_fidelity_report(json_path, report)
    table = format_headline(report["headline"])
    log.info("%s (%d shards):\n%s", json_path, len(shards), table)
    click.echo(table)


if __name__ == "__main__":
    cli()
