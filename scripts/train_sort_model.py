#!/usr/bin/env python
"""Train one sort-grid run and write its checkpoints (the original sort-grid runs' names and contents).

The checkpoint paths say what to train. The Final file's name gives the model and data
(layers, MLP, LayerNorm, length mode, train/test K, iterations); when it sits in the grid
tree (<with_layernorm|without_layernorm>/<dynamic|fixed>/<group>/task_XXXX/seed<S>/), the
tree must agree with the name and gives the seed. Each --intermediate file
(Checkpoint_..._iters<N>.pt, same run) is written after N optimizer steps.

Defaults are the sortgrid config section's (a short CPU run); the original runs' optimization is
--batch-size 4096 --learning-rate 1e-4 --warmup-iters 400 (config/sort_grid_full.yaml).

Example (the headline configuration, 1 layer, no MLP, LayerNorm, trained on K=4, the original runs' settings):

  python scripts/train_sort_model.py --device auto --batch-size 4096 --learning-rate 1e-4 --warmup-iters 400 \\
    --final runs/with_layernorm/fixed/len_gen_single_k4/task_0003/seed1337/Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters40000.pt \\
    --intermediate runs/with_layernorm/fixed/len_gen_single_k4/task_0003/seed1337/Checkpoint_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters20001.pt

Prints iterations/s to stdout at the end (and every --log-every steps to stderr).
"""
from __future__ import annotations

import re
from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import schema_defaults
from logit_lineage.sortgrid.names import parse_checkpoint_name
from logit_lineage.sortgrid.tree import parse_checkpoint_path

SORTGRID = schema_defaults("sortgrid")  # the config's defaults: one home, the schema
TRAINING = SORTGRID["training"]


def _run_of(final: Path, seed: int | None):
    if re.fullmatch(r"seed[0-9]+", final.parent.name):
        loc, name = parse_checkpoint_path(final)
        if seed is not None and seed != loc.seed:
            raise LineageError(f"--seed {seed} disagrees with the directory seed{loc.seed}", path=final)
        extra = {"regime": loc.regime, "group": loc.group, "task_id": loc.task_id}
        return name, loc.seed, extra
    name = parse_checkpoint_name(final)
    if seed is None:
        raise LineageError("outside the grid tree (no seed<S>/ directory): pass --seed", path=final)
    return name, seed, {}


@click.command(help=__doc__)
@click.option("--final", "final_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Final_<...>_iters<N>.pt to write; its name (and tree) defines the run; N = iterations.")
@click.option("--intermediate", "intermediate_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint_<...>_iters<M>.pt of the same run, written after M steps (repeatable).")
@click.option("--seed", type=int, default=None, help="Training seed; default: the seed<S> directory.")
@click.option("--batch-size", type=int, default=TRAINING["batch_size"], show_default=True, help="Sequences per step.")
@click.option("--learning-rate", type=float, default=TRAINING["learning_rate"], show_default=True,
              help="Peak AdamW learning rate.")
@click.option("--min-lr", type=float, default=TRAINING["min_lr"], show_default=True,
              help="Learning rate at the end of the cosine decay.")
@click.option("--warmup-iters", type=int, default=TRAINING["warmup_iters"], show_default=True, help="Linear warmup steps.")
@click.option("--weight-decay", type=float, default=TRAINING["weight_decay"], show_default=True,
              help="AdamW weight decay of matrices.")
@click.option("--grad-clip", type=float, default=TRAINING["grad_clip"], show_default=True,
              help="Gradient norm clip (0: off).")
@click.option("--device", default=SORTGRID["device"], show_default=True, help="auto (cuda if available), cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
@click.option("--log-every", type=int, default=TRAINING["log_every"], show_default=True,
              help="Log loss and it/s every N steps.")
@main_guard
def main(final_path, intermediate_paths, seed, batch_size, learning_rate, min_lr, warmup_iters,
         weight_decay, grad_clip, device, threads, log_every):
    import torch

    from logit_lineage.sortgrid.train import TrainSettings, resolve_device, train_run

    name, seed, extra = _run_of(final_path, seed)
    if name.prefix != "Final":
        raise LineageError("--final must name a Final_... checkpoint", path=final_path)
    outputs = {name.iters: final_path}
    for path in intermediate_paths:
        inter = parse_checkpoint_name(path)
        if inter.prefix != "Checkpoint" or inter.stem != name.stem:
            raise LineageError(f"--intermediate must be Checkpoint_{name.stem}_iters<N>.pt", path=path)
        outputs[inter.iters] = path
    settings = TrainSettings(
        max_iters=name.iters, batch_size=batch_size, learning_rate=learning_rate, min_lr=min_lr,
        warmup_iters=warmup_iters, weight_decay=weight_decay, grad_clip=grad_clip,
        log_every=log_every, checkpoint_iters=tuple(sorted(i for i in outputs if i != name.iters)),
    )
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    result = train_run(name, settings, seed=seed, device=dev, outputs=outputs, extra_config=extra)
    click.echo(
        f"trained {name.stem} seed {seed} on {dev}: {result.iters} iterations in {result.seconds:.1f} s "
        f"({result.iters_per_second:.1f} it/s), final loss {result.final_loss:.4f}"
    )


if __name__ == "__main__":
    main()
