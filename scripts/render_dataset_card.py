"""Write the Hub dataset card (README.md) for the compressed-logit shards.

\b
Reads every shard's parquet metadata (format version, extraction parameters,
row count) and writes a card whose YAML header has `configs` pointing
`datasets` at data/train-*-of-NNNNN.parquet, the parameters and the lineage
(teacher, dataset, config sha256). Offline: nothing is sent anywhere.
"""
from __future__ import annotations

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.card_file import write_card
from logit_lineage.hub.card import card_body, card_metadata, summarize_shards
from logit_lineage.hub.naming import shard_index
from logit_lineage.hub.settings import HubSettings


@click.command(help=__doc__)
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--hub", "hub_json", required=True, help="The `hub` config section as JSON.")
@click.option("--config-sha256", required=True, help="Hash of the config that produced the shards.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="README.md to write.")
@main_guard
def main(shards, hub_json, config_sha256, output) -> None:
    settings = HubSettings.from_json(hub_json)
    repo_id = settings.require_repo_id()
    indices = sorted(shard_index(s) for s in shards)
    if indices != list(range(len(shards))):
        raise LineageError(f"shards must be shard-00000 … shard-{len(shards) - 1:05d}, got indices {indices[:5]}…")
    summary = summarize_shards(list(shards))
    write_card(output, card_metadata(summary, repo_id=repo_id, config_sha256=config_sha256),
               card_body(summary, repo_id=repo_id, config_sha256=config_sha256))
    click.echo(f"card: {summary['n_shards']} shards, {summary['n_rows']} rows, "
               f"format version {summary['format_version']}", err=True)


if __name__ == "__main__":
    main()
