"""Train the gating network over expert logits on tunev; write it and the mixture's npz."""
from __future__ import annotations

import logging
from pathlib import Path

import click
import numpy as np

from logit_lineage.common.atomic import write_json
from logit_lineage.common.cli import main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.experts.checkpoint import save_checkpoint
from logit_lineage.experts.config import build, check_expert_names, parse_json
from logit_lineage.experts.data_file import read_classes
from logit_lineage.experts.gating import GatingTrain, apply_gating, feature_names, spec_dict, train_gating
from logit_lineage.experts.logits_npz import SPLITS, write_npz
from logit_lineage.experts.stack import balanced_group_error, load_stack

log = logging.getLogger("logit_lineage")
MODEL_KEYS = ("hidden", "dropout")


@click.command(help="""Train the gating MLP and write the gated mixture's logits.

Reads LOGITS_DIR/<expert>/<split>_logits.npz (or the legacy .pt names, with labels from
--data-dir) for every expert; experts must agree on N, C and targets. Features per expert:
entropy, top-5 mass, max prob, top1-top2 gap, cosine and KL to the mean posterior; plus
global ones. w = softmax(MLP(features)), eta = sum_e w_e softmax(logits_e), trained on
tunev with the class-balanced loss -c_y log eta_y. Writes OUTPUT/gating.safetensors
(config in its header), OUTPUT/summary.json and OUTPUT/<split>_mixture.npz
(logits = log eta, so softmax gives eta back).""")
@click.option("--logits-dir", required=True, type=click.Path(file_okay=False), help="Folder with one sub-folder of logits per expert.")
@click.option("--experts", "experts_csv", required=True, help="Comma-separated expert names, in mixing order.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Output folder of make_longtail_data.py (labels, classes.json).")
@click.option("--config", "config_json", default="{}", show_default=True, help="JSON of the experts.gating config section.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True,
              help="Seed of the gating initialisation and batch order.")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for torch.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Directory for the gating outputs.")
@main_guard
def main(logits_dir, experts_csv, data_dir, config_json, seed, threads, output):
    experts = check_expert_names([e.strip() for e in experts_csv.split(",") if e.strip()], "experts.experts")
    info = read_classes(Path(data_dir) / "classes.json")
    groups = np.asarray(info["groups"])
    stacks = {s: load_stack(logits_dir, experts, s, data_dir, info["n_classes"]) for s in SPLITS}
    cfg = parse_json(config_json, "--config")
    model_cfg = {k: cfg.pop(k) for k in MODEL_KEYS if k in cfg}
    train_spec = build(GatingTrain, cfg, "experts.gating")
    import torch  # after the input checks: bad input fails fast, without the torch import

    torch.set_num_threads(max(1, threads))
    logits, y = stacks["tunev"]
    model, spec, history = train_gating(logits, y, groups, train_spec, seed, **model_cfg)
    out = Path(output)
    config = {
        "experts": experts, "model": spec_dict(spec), "training": spec_dict(train_spec), "seed": seed,
        "features": feature_names(experts), "class_groups": groups.tolist(),
    }
    save_checkpoint(out / "gating.safetensors", model.state_dict(), config, kind="gating")
    summary = {"experts": experts, "loss_history": [round(v, 6) for v in history], "splits": {}}
    for split in SPLITS:
        logits, y = stacks[split]
        weights, log_eta = apply_gating(model, logits, groups)
        write_npz(out / f"{split}_mixture.npz", log_eta, y)
        err = balanced_group_error(np.exp(log_eta), y, groups)
        per_expert = {e: balanced_group_error(logits[:, i, :], y, groups)["balanced_error"] for i, e in enumerate(experts)}
        summary["splits"][split] = {
            "mean_weights": dict(zip(experts, map(float, weights.mean(axis=0)))),
            "mixture": err, "experts_balanced_error": per_expert,
        }
        log.info("%s: mixture balanced error %.4f (experts %s), mean weights %s", split, err["balanced_error"],
                 {e: round(v, 4) for e, v in per_expert.items()}, np.round(weights.mean(axis=0), 3).tolist())
    write_json(out / "summary.json", summary)


if __name__ == "__main__":
    main()
