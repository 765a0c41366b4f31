"""Create the Hub repo that receives the compressed-logit shards (if it does not exist).

\b
Reads the `hub` config section (JSON) and creates `repo_id` as a repo of
`repo_type` (private unless `private: false`), plus the branch `revision` if it is
not main. Writes a receipt (repo, revision, head commit) only after the Hub
answered. The token comes from HF_TOKEN or the cached login (`hf auth login`).
"""
from __future__ import annotations

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.hub.publish import create_repo
from logit_lineage.hub.receipt import make_receipt, write_receipt
from logit_lineage.hub.retry import RetryPolicy
from logit_lineage.hub.settings import HubSettings
from logit_lineage.hub.target import make_api, make_target, secure_logging, target_fields


@click.command(help=__doc__)
@click.option("--hub", "hub_json", required=True, help="The `hub` config section as JSON.")
@click.option("--receipt", "receipt_path", required=True, type=click.Path(dir_okay=False),
              help="Repo receipt to write (JSON).")
@main_guard
def main(hub_json: str, receipt_path: str) -> None:
    secure_logging()
    settings = HubSettings.from_json(hub_json)
    target = make_target(settings)
    api = make_api(settings)
    fields = create_repo(api, target, private=settings.private, retry=RetryPolicy.from_settings(settings))
    write_receipt(receipt_path, make_receipt("repo", **target_fields(target), **fields))
    click.echo(f"repo {target.describe()} ready at {fields['commit'][:12]}", err=True)


if __name__ == "__main__":
    main()
