"""Verify a published Hub repo against the local shards.

\b
Every local shard `shard-NNNNN.parquet` must be in the repo at
data/train-NNNNN-of-MMMMM.parquet (MMMMM = --n-shards, default: the number of
shards given) with the same size and sha256, and README.md must be a dataset card
whose `configs` cover those files. --download also fetches every file and hashes
the bytes that came back. Prints one `error:` line and exits 1 on any difference;
writes the report (--output) only when all is equal.

\b
Example:
  python scripts/verify_hub_repo.py --repo-id me/logits results/distill/logits/shard-*.parquet
"""
from __future__ import annotations

import dataclasses

import click

from logit_lineage.common.atomic import write_json
from logit_lineage.common.cli import main_guard
from logit_lineage.hub.naming import path_in_repo, shard_index
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.settings import HubSettings
from logit_lineage.hub.target import make_api, make_target, secure_logging
from logit_lineage.hub.verify import Expected, verify_repo


@click.command(help=__doc__)
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--hub", "hub_json", default="{}", help="The `hub` config section as JSON (options below override it).")
@click.option("--repo-id", default=None, help="namespace/name of the repo.")
@click.option("--revision", default=None, help="Branch or commit (default: the hub section's, else main).")
@click.option("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT, else huggingface.co).")
@click.option("--n-shards", type=click.IntRange(min=1), default=None, help="Total shard count (default: all given).")
@click.option("--download/--no-download", default=False, help="Also download every file and hash it.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write the report here (JSON).")
@main_guard
def main(shards, hub_json, repo_id, revision, endpoint, n_shards, download, output) -> None:
    secure_logging()
    data = dataclasses.asdict(HubSettings.from_json(hub_json or "{}"))
    overrides = {"repo_id": repo_id, "revision": revision, "endpoint": endpoint}
    data.update({k: v for k, v in overrides.items() if v is not None})
    settings = HubSettings.from_mapping(data, source="hub")
    target = make_target(settings)
    n = n_shards or len(shards)
    expected = [Expected(str(s), path_in_repo(shard_index(s), n)) for s in shards]
    api = make_api(settings)
    report = verify_repo(api, target, expected, retry=RetryPolicy.from_settings(settings), download=download)
    if output:
        write_json(output, report)
    click.echo(f"{target.describe()}: {len(report['files'])} shard(s) verified at {report['commit'][:12]}"
               + (" (downloaded)" if download else ""), err=True)


if __name__ == "__main__":
    main()
