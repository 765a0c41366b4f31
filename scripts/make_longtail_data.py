"""Make the long-tail classification data: train/tunev/val/test npz and classes.json."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.experts.config import parse_json
from logit_lineage.experts.data import build_dataset
from logit_lineage.experts.data_file import DATA_SPLITS, write_classes, write_split

log = logging.getLogger("logit_lineage")


@click.command(help="""Make the long-tailed data the experts chain trains and evaluates on.

With the default config (source=generated) this draws a deterministic 100-class problem
with n_i = floor(n_max * IF^(-i/99)) training examples per class and balanced, disjoint
tunev/val/test splits. With source=features it validates your own features from
features_dir (train.npz, tunev.npz, val.npz, test.npz; keys x [N, D], y [N]) and copies
them. Writes OUTPUT/<split>.npz and OUTPUT/classes.json (class counts, prior, head/tail
groups: head = more than head_threshold training examples).""")
@click.option("--config", "config_json", required=True, help="JSON of the experts.data config section.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True,
              help="Seed of the generated data.")
@click.option("--labels-only", is_flag=True, help="Features may be absent (logits are imported, not recomputed).")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Directory for the npz files and classes.json.")
@main_guard
def main(config_json: str, seed: int, labels_only: bool, output: str) -> None:
    cfg = parse_json(config_json, "--config")
    splits, info = build_dataset(cfg, seed, need_x=not labels_only)
    out = Path(output)
    for split in DATA_SPLITS:
        x, y = splits[split]
        write_split(out / f"{split}.npz", x, y)
        log.info("%s: %d examples", split, len(y))
    write_classes(out / "classes.json", info)
    log.info("%d classes: %d head, %d tail", info["n_classes"], info["n_head"], info["n_tail"])


if __name__ == "__main__":
    main()
