"""Pre-upload one compressed-logit shard's content to the Hub (Git LFS), without committing.

\b
The shard `…/shard-NNNNN.parquet` goes to `data/train-NNNNN-of-MMMMM.parquet`
(MMMMM = --n-shards). If the Hub already holds the same sha256 at that path,
nothing is sent. Transient errors (HTTP 429/5xx, timeouts) are retried with
exponential backoff (`retries`, `backoff_seconds` in the hub section). The
receipt (path in repo, sha256, size, transfer) is written only after the Hub
confirmed; a failure leaves no receipt and prints one `error:` line.
"""
from __future__ import annotations

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.hub.naming import path_in_repo, shard_index
from logit_lineage.hub.publish import preupload_shard
from logit_lineage.hub.receipt import make_receipt, read_receipt, write_receipt
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.settings import HubSettings
from logit_lineage.hub.target import check_same_target, make_api, make_target, secure_logging, target_fields


@click.command(help=__doc__)
@click.option("--hub", "hub_json", required=True, help="The `hub` config section as JSON.")
@click.option("--shard", "shard_path", required=True, type=click.Path(dir_okay=False),
              help="Local shard parquet (named shard-NNNNN.parquet).")
@click.option("--n-shards", required=True, type=click.IntRange(min=1), help="Total number of shards.")
@click.option("--repo-receipt", type=click.Path(dir_okay=False),
              help="Receipt of create_hub_repo.py; checked to name the same repo.")
@click.option("--receipt", "receipt_path", required=True, type=click.Path(dir_okay=False),
              help="Shard receipt to write (JSON).")
@main_guard
def main(hub_json: str, shard_path: str, n_shards: int, repo_receipt: str | None, receipt_path: str) -> None:
    secure_logging()
    settings = HubSettings.from_json(hub_json)
    target = make_target(settings)
    if repo_receipt:
        check_same_target(read_receipt(repo_receipt, "repo"), target, source=repo_receipt)
    dest = path_in_repo(shard_index(shard_path), n_shards)
    api = make_api(settings)
    fields = preupload_shard(api, target, shard_path, dest, retry=RetryPolicy.from_settings(settings))
    write_receipt(receipt_path, make_receipt("shard", **target_fields(target), **fields))
    what = "uploaded" if fields["uploaded"] else "already on the Hub" if fields["commit"] else "pending commit"
    click.echo(f"{dest}: {what} (sha256 {fields['sha256'][:12]}, {fields['size']} bytes)", err=True)


if __name__ == "__main__":
    main()
