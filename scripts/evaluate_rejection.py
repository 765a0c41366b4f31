"""Fit Chow's rule and the plug-in rejectors on val for one predictor; evaluate on test."""
from __future__ import annotations

import logging

import click
import numpy as np

from logit_lineage.common.atomic import write_json
from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import schema_defaults
from logit_lineage.experts.config import parse_json
from logit_lineage.experts.data_file import read_classes
from logit_lineage.experts.evaluate import METHODS, evaluate_predictor, rejection_spec
from logit_lineage.experts.gating import softmax
from logit_lineage.experts.logits_npz import read_npz

log = logging.getLogger("logit_lineage")


@click.command(help="""Learning to reject for one predictor (an expert or the gated mixture).

eta = softmax of the logits in VAL and TEST (<split>_logits.npz or <split>_mixture.npz).
On val: Algorithm 1 of Narasimhan et al. (ICLR 2024) fits alpha by fixed-point iteration
for every mu on the grid and keeps the mu with the lowest balanced error; Algorithm 2
tunes group weights beta by exponentiated gradient for the worst-group error. On test:
balanced and worst-group error among accepted samples at every target rejection rate
(the cost c is set per rate so that exactly that share is rejected), for Chow's rule,
the balanced plug-in and the worst-group plug-in, and the AURC of each curve. Writes
one JSON file.""")
@click.option("--name", required=True, help="Predictor name recorded in the output (an expert name or 'mixture').")
@click.option("--val", "val_path", required=True, type=click.Path(dir_okay=False), help="npz of the val split.")
@click.option("--test", "test_path", required=True, type=click.Path(dir_okay=False), help="npz of the test split.")
@click.option("--classes", "classes_path", required=True, type=click.Path(dir_okay=False), help="classes.json (head/tail groups).")
@click.option("--config", "config_json", default="{}", show_default=True, help="JSON of the experts.rejection config section.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True,
              help="Seed of the val halving used by Algorithm 2.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="JSON file to write.")
@main_guard
def main(name, val_path, test_path, classes_path, config_json, seed, output):
    info = read_classes(classes_path)
    val, test = read_npz(val_path), read_npz(test_path)
    for rec in (val, test):
        if rec.n_classes != info["n_classes"]:
            raise LineageError(f"key 'logits' has {rec.n_classes} classes but classes.json key 'n_classes' is {info['n_classes']}", path=rec.path)
    spec = rejection_spec(parse_json(config_json, "--config"), seed)
    groups = np.asarray(info["groups"])
    result = evaluate_predictor(softmax(val.logits.astype(np.float64)), val.targets,
                                softmax(test.logits.astype(np.float64)), test.targets, groups, spec)
    for method in METHODS:
        r = result[method]
        log.info("%s %-15s err@0 %.4f  AURC balanced %.4f  worst %.4f", name, method,
                 r["curve"][0]["balanced_error"], r["aurc_balanced"], r["aurc_worst"])
    write_json(output, {
        "predictor": name, "val": str(val_path), "test": str(test_path),
        "n_val": val.n, "n_test": test.n, "group_names": info["group_names"],
        "rates": list(spec.rates), "rejection": spec.as_dict(), "methods": result,
    })


if __name__ == "__main__":
    main()
