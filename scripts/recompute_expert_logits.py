"""Run a trained expert checkpoint over tunev/val/test and write <split>_logits.npz."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.experts.checkpoint import load_checkpoint
from logit_lineage.experts.data_file import read_classes, read_split
from logit_lineage.experts.expert import ExpertSpec, build_mlp, predict_logits, resolve_device
from logit_lineage.experts.logits_npz import SPLITS, npz_name, write_npz

log = logging.getLogger("logit_lineage")


@click.command(help="""Recompute one expert's logits on every held-out split.

Loads CHECKPOINT (safetensors from train_expert.py), runs it over DATA_DIR/<split>.npz
and writes OUTPUT/<split>_logits.npz with keys logits [N, C] float32 (raw, unadjusted),
targets [N] and predictions [N] (argmax), for split in tunev, val, test.""")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Expert checkpoint (.safetensors).")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Output folder of make_longtail_data.py.")
@click.option("--splits", default=",".join(SPLITS), show_default=True, help="Comma-separated splits to write.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for torch.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Directory for <split>_logits.npz.")
@main_guard
def main(checkpoint, data_dir, splits, device, threads, output):
    import torch

    torch.set_num_threads(max(1, threads))
    tensors, config = load_checkpoint(checkpoint, kind="expert")
    try:
        spec = ExpertSpec(**config["model"])
        model = build_mlp(spec)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise LineageError(f"checkpoint does not match its metadata key 'config' ({str(exc).splitlines()[0]})", path=checkpoint) from None
    data = Path(data_dir)
    info = read_classes(data / "classes.json")
    if info["n_classes"] != spec.n_classes:
        raise LineageError(f"checkpoint has {spec.n_classes} classes but classes.json key 'n_classes' is {info['n_classes']}", path=checkpoint)
    device = resolve_device(device)
    for split in [s.strip() for s in splits.split(",") if s.strip()]:
        if split not in SPLITS:
            raise LineageError(f"option --splits: unknown split '{split}' (expected {', '.join(SPLITS)})")
        x, y = read_split(data / f"{split}.npz", n_classes=info["n_classes"])
        if x.shape[1] != spec.in_dim:
            raise LineageError(f"key 'x' has D={x.shape[1]} but the checkpoint expects {spec.in_dim}", path=data / f"{split}.npz")
        logits = predict_logits(model, x, device=device)
        record = write_npz(Path(output) / npz_name(split), logits, y)
        acc = float((record.predictions == y).mean())
        log.info("%s/%s: N=%d, accuracy %.4f", config.get("expert", "?"), split, record.n, acc)


if __name__ == "__main__":
    main()
