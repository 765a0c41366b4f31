"""Train one long-tail expert (ce, logitadjust or balsoftmax) and save it as safetensors."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from logit_lineage.common.cli import main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.experts.checkpoint import save_checkpoint
from logit_lineage.experts.config import build, check_expert_names, parse_json
from logit_lineage.experts.data_file import read_classes, read_split
from logit_lineage.experts.expert import ExpertSpec, TrainSpec, expert_seed, resolve_device, spec_dict, train_expert

log = logging.getLogger("logit_lineage")


@click.command(help="""Train one expert MLP on DATA_DIR/train.npz with its long-tail loss.

EXPERT names the loss: ce (plain cross-entropy), logitadjust (CE on logits + tau*log prior)
or balsoftmax (CE on logits + log class count); class counts come from
DATA_DIR/classes.json. The checkpoint is a safetensors file whose header carries the
model config, so recompute_expert_logits.py can rebuild the network; nothing is pickled.""")
@click.option("--expert", required=True, help="Expert name: ce, logitadjust or balsoftmax.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Output folder of make_longtail_data.py.")
@click.option("--model-config", default="{}", show_default=True, help="JSON of the experts.model config section.")
@click.option("--train-config", default="{}", show_default=True, help="JSON of the experts.training config section.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True,
              help="Global seed; the expert's own seed derives from it and its name.")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for torch.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint path (.safetensors).")
@main_guard
def main(expert, data_dir, model_config, train_config, seed, threads, output):
    check_expert_names([expert], "experts.experts")
    data = Path(data_dir)
    info = read_classes(data / "classes.json")
    x, y = read_split(data / "train.npz", n_classes=info["n_classes"])
    train_cfg = parse_json(train_config, "--train-config")
    device = resolve_device(train_cfg.pop("device", "auto"))
    model_spec = build(ExpertSpec, parse_json(model_config, "--model-config"), "experts.model",
                       in_dim=int(x.shape[1]), n_classes=int(info["n_classes"]))
    train_spec = build(TrainSpec, train_cfg, "experts.training")
    import torch  # after the input checks: bad input fails fast, without the torch import

    torch.set_num_threads(max(1, threads))
    own_seed = expert_seed(seed, expert)
    log.info("training %s on %d examples (%s, seed %d)", expert, len(y), device, own_seed)
    model, history = train_expert(x, y, info["class_counts"], expert, model_spec, train_spec, own_seed, device)
    config = {
        "expert": expert, "loss": expert, "model": spec_dict(model_spec), "training": spec_dict(train_spec),
        "seed": own_seed, "device": device, "loss_history": [round(v, 6) for v in history],
    }
    save_checkpoint(output, model.state_dict(), config, kind="expert")
    log.info("final training loss %.4f -> %s", history[-1], output)


if __name__ == "__main__":
    main()
