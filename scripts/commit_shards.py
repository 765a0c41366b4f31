"""Commit pre-uploaded shards (and/or the dataset card) to the Hub in one commit.

\b
Each --receipt is a shard receipt from preupload_shard.py; its file is committed
at the receipt's path in the repo by sha256 (the bytes are already on the Hub, so
the local file is not read again; its size is checked against the receipt).
--card adds README.md. Files the Hub already holds with the same content are
left out; if nothing is left, no commit is made. At most 100 shards per commit:
the Hub limits commits per hour. The commit receipt (commit id, every file's path,
sha256, size and status) is written only after the Hub confirmed.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.hub.naming import CARD_PATH
from logit_lineage.hub.publish import CommitItem, commit_items
from logit_lineage.hub.receipt import make_receipt, read_receipt, write_receipt
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.settings import HubSettings
from logit_lineage.hub.target import check_same_target, make_api, make_target, secure_logging, target_fields

MAX_SHARDS_PER_COMMIT = 100


@click.command(help=__doc__)
@click.option("--hub", "hub_json", required=True, help="The `hub` config section as JSON.")
@click.option("--receipt", "receipts", multiple=True, type=click.Path(dir_okay=False),
              help="Shard receipt (repeat; at most 100).")
@click.option("--card", "card_path", type=click.Path(dir_okay=False), help="Dataset card to commit as README.md.")
@click.option("--after", "after", multiple=True, type=click.Path(dir_okay=False),
              help="Commit receipts that must exist first (checked to name the same repo).")
@click.option("--message", default=None, help="Commit message (a default names the shards).")
@click.option("--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Commit receipt to write (JSON).")
@main_guard
def main(hub_json, receipts, card_path, after, message, output) -> None:
    secure_logging()
    settings = HubSettings.from_json(hub_json)
    target = make_target(settings)
    if len(receipts) > min(MAX_SHARDS_PER_COMMIT, settings.shards_per_commit):
        raise LineageError(f"{len(receipts)} shard receipts for one commit; at most "
                           f"{min(MAX_SHARDS_PER_COMMIT, settings.shards_per_commit)} (hub.shards_per_commit)")
    for path in after:
        check_same_target(read_receipt(path, "commit"), target, source=path)
    items = []
    for path in receipts:
        receipt = read_receipt(path, "shard")
        check_same_target(receipt, target, source=path)
        items.append(CommitItem(receipt["path_in_repo"], receipt["sha256"], receipt["size"],
                                local_path=receipt["local_path"]))
    if card_path:
        items.append(CommitItem.from_bytes(CARD_PATH, Path(card_path).read_bytes()))
    if not items:
        raise LineageError("nothing to commit: give --receipt and/or --card")
    if message is None:
        shards = [i.path_in_repo for i in items if i.path_in_repo != CARD_PATH]
        message = (f"Add {len(shards)} logit shard(s) {Path(shards[0]).name} … {Path(shards[-1]).name}"
                   if shards else "Update dataset card")
    api = make_api(settings)
    fields = commit_items(api, target, items, message=message, retry=RetryPolicy.from_settings(settings))
    write_receipt(output, make_receipt("commit", **target_fields(target), **fields))
    made = "new commit" if fields["created"] else "no commit needed"
    click.echo(f"{target.describe()}: {made} {fields['commit'][:12]} ({len(items)} file(s))", err=True)


if __name__ == "__main__":
    main()
