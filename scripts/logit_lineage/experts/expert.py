"""The expert network (a small MLP over features) and its training loop."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass

import numpy as np

from logit_lineage.common.schema import defaults_from_schema
from logit_lineage.experts.losses import make_loss

log = logging.getLogger("logit_lineage")


# Defaults: experts.model and experts.training in workflow/schemas/experts.schema.yaml.
@dataclass(frozen=True)
@defaults_from_schema("experts", "model")
class ExpertSpec:
    in_dim: int
    n_classes: int
    hidden: int
    depth: int
    dropout: float


@dataclass(frozen=True)
@defaults_from_schema("experts", "training")
class TrainSpec:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    tau: float


def build_mlp(spec: ExpertSpec):
    import torch.nn as nn

    layers, width = [], spec.in_dim
    for _ in range(spec.depth):
        layers += [nn.Linear(width, spec.hidden), nn.ReLU(), nn.Dropout(spec.dropout)]
        width = spec.hidden
    layers.append(nn.Linear(width, spec.n_classes))
    return nn.Sequential(*layers)


def expert_seed(seed: int, name: str) -> int:
    """A per-expert seed: experts differ in initialisation and batch order, not only loss."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def train_expert(x: np.ndarray, y: np.ndarray, class_counts, loss: str, spec: ExpertSpec,
                 train: TrainSpec, seed: int, device: str = "cpu", progress: bool = True):
    """Train one expert; returns (model in eval mode on cpu, per-epoch mean losses)."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_mlp(spec).to(device)
    loss_fn = make_loss(loss, class_counts, train.tau)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    steps_per_epoch = max(1, -(-len(y) // train.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, total_steps=train.epochs * steps_per_epoch)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.int64, device=device)
    history = []
    model.train()
    for _ in tqdm(range(train.epochs), desc=f"train {loss}", disable=not progress, mininterval=2):
        order = torch.randperm(len(yt), generator=gen).to(device)
        total = 0.0
        for start in range(0, len(yt), train.batch_size):
            idx = order[start:start + train.batch_size]
            opt.zero_grad(set_to_none=True)
            batch_loss = loss_fn(model(xt[idx]), yt[idx])
            batch_loss.backward()
            opt.step()
            sched.step()
            total += float(batch_loss.detach()) * len(idx)
        history.append(total / len(yt))
    model.eval()
    return model.cpu(), history


def predict_logits(model, x: np.ndarray, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    import torch

    model = model.to(device).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[start:start + batch_size], dtype=torch.float32, device=device)
            out.append(model(xb).float().cpu().numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def spec_dict(spec) -> dict:
    return asdict(spec)
