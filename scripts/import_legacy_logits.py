"""Import expert logits made elsewhere (npz or the legacy .pt layout) as <split>_logits.npz."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.experts.data_file import read_classes
from logit_lineage.experts.data_file import read_split as read_data_split
from logit_lineage.experts.logits_npz import SPLITS, npz_name, read_split, write_npz

log = logging.getLogger("logit_lineage")


@click.command(help="""Convert one expert's logits folder into the chain's npz layout.

For each split, SOURCE_DIR/<split>_logits.npz is read if present (keys logits, targets,
predictions); otherwise the legacy names tuneV_logits.pt, val_lt_logits.pt and
test_lt_logits.pt (float16 tensors [N, C]) are loaded with torch.load(weights_only=True)
only: a pickle that would run code is refused. Labels come from DATA_DIR/<split>.npz
(legacy files carry none) and must match the npz targets when both exist. Writes
OUTPUT/<split>_logits.npz.""")
@click.option("--source-dir", required=True, type=click.Path(file_okay=False), help="The expert's folder of logits made elsewhere.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Output folder of make_longtail_data.py (labels).")
@click.option("--splits", default=",".join(SPLITS), show_default=True, help="Comma-separated splits to import.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Directory for <split>_logits.npz.")
@main_guard
def main(source_dir, data_dir, splits, output):
    data = Path(data_dir)
    info = read_classes(data / "classes.json")
    for split in [s.strip() for s in splits.split(",") if s.strip()]:
        if split not in SPLITS:
            raise LineageError(f"option --splits: unknown split '{split}' (expected {', '.join(SPLITS)})")
        _, y = read_data_split(data / f"{split}.npz", n_classes=info["n_classes"], need_x=False)
        record = read_split(source_dir, split, targets=y)
        if record.n_classes != info["n_classes"]:
            raise LineageError(f"key 'logits' has {record.n_classes} classes but classes.json key 'n_classes' is {info['n_classes']}", path=record.path)
        write_npz(Path(output) / npz_name(split), record.logits, record.targets, record.predictions)
        log.info("%s -> %s (N=%d)", record.path, Path(output) / npz_name(split), record.n)


if __name__ == "__main__":
    main()
