#!/usr/bin/env python
"""Evaluate one sort checkpoint on the test lengths and write its evaluation JSON.

Teacher-forced: each test sequence is fed whole and the argmax at every position of the
sorted part is compared with the target. Per test K: exact match (whole sequence right)
and token accuracy; the headline is the mean exact match over K. Test K default to the
checkpoint name's testK range (17..32). Split-layout (small) checkpoints are converted
to the fused layout on load. The JSON format is documented in scripts/codec/sort_eval.py.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.schema import schema_defaults

SORTGRID = schema_defaults("sortgrid")  # the config's defaults: one home, the schema
EVALUATION = SORTGRID["evaluation"]


@click.command(help=__doc__)
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Evaluation JSON to write.")
@click.option("--samples-per-length", type=int, default=EVALUATION["samples_per_length"], show_default=True,
              help="Test sequences per K.")
@click.option("--batch-size", type=int, default=EVALUATION["batch_size"], show_default=True,
              help="Sequences per forward pass.")
@click.option("--eval-seed", type=int, default=EVALUATION["seed"], show_default=True,
              help="Seed of the test sets (same for every checkpoint).")
@click.option("--test-min-k", type=int, default=None, help="Override the name's smallest test K.")
@click.option("--test-max-k", type=int, default=None, help="Override the name's largest test K.")
@click.option("--device", default=SORTGRID["device"], show_default=True, help="auto (cuda if available), cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@main_guard
def main(checkpoint, output, samples_per_length, batch_size, eval_seed, test_min_k, test_max_k, device, threads):
    import torch

    from logit_lineage.common.errors import LineageError
    from logit_lineage.sortgrid.eval_file import write_eval
    from logit_lineage.sortgrid.evaluate import evaluate_checkpoint
    from logit_lineage.sortgrid.train import resolve_device

    if (test_min_k is None) != (test_max_k is None):
        raise LineageError("give both --test-min-k and --test-max-k, or neither")
    if samples_per_length < 1 or batch_size < 1:
        raise LineageError("--samples-per-length and --batch-size must be >= 1")
    if threads:
        torch.set_num_threads(threads)
    record = evaluate_checkpoint(
        checkpoint, samples_per_length=samples_per_length, batch_size=batch_size, seed=eval_seed,
        device=resolve_device(device),
        test_range=None if test_min_k is None else (test_min_k, test_max_k),
    )
    write_eval(output, record)
    ks = [r["k"] for r in record["per_k"]]
    click.echo(
        f"{checkpoint.name}: exact match {record['mean_exact_match']:.4f}, token accuracy "
        f"{record['mean_token_accuracy']:.4f} (mean over K={ks[0]}..{ks[-1]}, "
        f"{samples_per_length} sequences per K, layout {record['layout']})"
    )


if __name__ == "__main__":
    main()
