"""Gating: per-sample mixing weights over experts from features of their softmax outputs.

Per expert e (p_e = softmax(logits_e), p_bar = mean_e p_e): entropy, top-5 mass, max prob,
top1 - top2 gap, cosine(p_e, p_bar), KL(p_e || p_bar). Global: entropy and max of p_bar,
the fraction of experts whose top-1 matches p_bar's, and p_bar's mass on tail classes.
The MLP maps standardised features to w = softmax(MLP(f)); the mixture is
eta = sum_e w_e p_e, trained on tunev with the class-balanced loss -c_y log eta_y.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from logit_lineage.common.schema import defaults_from_schema

EPS = 1e-12
PER_EXPERT_FEATURES = ("entropy", "top5_mass", "max_prob", "top1_top2_gap", "cosine_to_mean", "kl_to_mean")
GLOBAL_FEATURES = ("mean_entropy", "mean_max_prob", "top1_agreement", "mean_tail_mass")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def feature_names(expert_names) -> list[str]:
    return [f"{e}.{f}" for e in expert_names for f in PER_EXPERT_FEATURES] + list(GLOBAL_FEATURES)


def gating_features(logits: np.ndarray, class_groups: np.ndarray | None = None) -> np.ndarray:
    """[N, E, C] expert logits -> [N, 6E + 4] float32 features (order of feature_names)."""
    p = softmax(np.asarray(logits, dtype=np.float64))
    n, e, c = p.shape
    p_bar = p.mean(axis=1)  # [N, C]
    log_p = np.log(p + EPS)
    entropy = -(p * log_p).sum(-1)  # [N, E]
    k = min(5, c)
    top = -np.partition(-p, k - 1, axis=-1)[..., :k]  # the k largest, unordered
    top5 = top.sum(-1)
    top2 = -np.partition(-p, 1, axis=-1)[..., :2]
    max_prob = top2.max(-1)
    gap = max_prob - top2.min(-1)
    cos = (p * p_bar[:, None, :]).sum(-1) / (
        np.linalg.norm(p, axis=-1) * np.linalg.norm(p_bar, axis=-1)[:, None] + EPS
    )
    kl = (p * (log_p - np.log(p_bar + EPS)[:, None, :])).sum(-1)
    per_expert = np.stack([entropy, top5, max_prob, gap, cos, kl], axis=-1).reshape(n, e * 6)
    mean_entropy = -(p_bar * np.log(p_bar + EPS)).sum(-1)
    mean_max = p_bar.max(-1)
    agreement = (p.argmax(-1) == p_bar.argmax(-1)[:, None]).mean(-1)
    if class_groups is None:
        tail_mass = np.zeros(n)
    else:
        tail_mass = p_bar[:, np.asarray(class_groups) == 1].sum(-1)
    glob = np.stack([mean_entropy, mean_max, agreement, tail_mass], axis=-1)
    return np.concatenate([per_expert, glob], axis=1).astype(np.float32)


# Defaults: experts.gating in workflow/schemas/experts.schema.yaml (one section for both).
@dataclass(frozen=True)
@defaults_from_schema("experts", "gating")
class GatingSpec:
    n_features: int
    n_experts: int
    hidden: int
    dropout: float


@dataclass(frozen=True)
@defaults_from_schema("experts", "gating")
class GatingTrain:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float


def build_gating(spec: GatingSpec):
    import torch
    import torch.nn as nn

    class Gating(nn.Module):
        """Standardise features (stats stored as buffers), MLP, softmax over experts."""

        def __init__(self):
            super().__init__()
            self.register_buffer("feature_mean", torch.zeros(spec.n_features))
            self.register_buffer("feature_std", torch.ones(spec.n_features))
            self.mlp = nn.Sequential(
                nn.Linear(spec.n_features, spec.hidden), nn.ReLU(), nn.Dropout(spec.dropout),
                nn.Linear(spec.hidden, spec.hidden), nn.ReLU(),
                nn.Linear(spec.hidden, spec.n_experts),
            )

        def forward(self, features):
            return torch.softmax(self.mlp((features - self.feature_mean) / self.feature_std), dim=-1)

    return Gating()


def mixture_log_probs(weights, logits):
    """log eta = logsumexp_e(log w_e + log_softmax(logits_e)) : [N, C], computed in log space."""
    import torch

    log_p = torch.log_softmax(logits, dim=-1)  # [N, E, C]
    return torch.logsumexp(torch.log(weights.clamp_min(EPS))[..., None] + log_p, dim=1)


def class_balance_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """c_y proportional to 1 / count(y) in the training split, normalised to mean 1 over samples.

    tunev is balanced by default (all weights 1); a user's long-tailed tunev gets re-balanced.
    """
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    per_sample = w[targets]
    return w / per_sample.mean()


def train_gating(logits: np.ndarray, targets: np.ndarray, class_groups, spec_train: GatingTrain,
                 seed: int, hidden: int | None = None, dropout: float | None = None, progress: bool = True):
    """Train the gating network on one split; returns (model, GatingSpec, loss history)."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    feats = gating_features(logits, class_groups)
    shape = {k: v for k, v in (("hidden", hidden), ("dropout", dropout)) if v is not None}  # else the schema's
    spec = GatingSpec(n_features=feats.shape[1], n_experts=logits.shape[1], **shape)
    model = build_gating(spec)
    model.feature_mean.copy_(torch.as_tensor(feats.mean(0)))
    model.feature_std.copy_(torch.as_tensor(feats.std(0) + 1e-6))
    f = torch.as_tensor(feats)
    lg = torch.as_tensor(logits, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.int64)
    cw = torch.as_tensor(class_balance_weights(targets, logits.shape[2]), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=spec_train.lr, weight_decay=spec_train.weight_decay)
    history = []
    model.train()
    for _ in tqdm(range(spec_train.epochs), desc="train gating", disable=not progress, mininterval=2):
        order = torch.randperm(len(y), generator=gen)
        total, weight = 0.0, 0.0
        for start in range(0, len(y), spec_train.batch_size):
            idx = order[start:start + spec_train.batch_size]
            log_eta = mixture_log_probs(model(f[idx]), lg[idx])
            nll = -log_eta.gather(1, y[idx, None])[:, 0]
            wb = cw[y[idx]]
            loss = (wb * nll).sum() / wb.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float((wb * nll).sum().detach())
            weight += float(wb.sum().detach())
        history.append(total / weight)
    model.eval()
    return model, spec, history


def apply_gating(model, logits: np.ndarray, class_groups) -> tuple[np.ndarray, np.ndarray]:
    """Returns (mixing weights [N, E], log eta [N, C]) as float32 arrays."""
    import torch

    feats = torch.as_tensor(gating_features(logits, class_groups))
    with torch.no_grad():
        w = model(feats)
        log_eta = mixture_log_probs(w, torch.as_tensor(logits, dtype=torch.float32))
    return w.numpy().astype(np.float32), log_eta.numpy().astype(np.float32)


def spec_dict(spec) -> dict:
    return asdict(spec)
