"""The three expert losses: plain, logit-adjusted and balanced-softmax cross-entropy.

All three are cross-entropy on shifted logits; only the shift differs:
- `ce`:          no shift;
- `logitadjust`: + tau * log(prior_y)  (Menon et al., ICLR 2021, logit-adjusted loss);
- `balsoftmax`:  + log(n_y)            (Ren et al., NeurIPS 2020, balanced softmax).
With tau = 1 the last two differ by a constant per row (log of the total count), which
softmax ignores, so they train the same optimum; they still give different experts
through their seeds, and `tau` != 1 moves logitadjust toward the tail (tau > 1) or head.
The shift is a training device only: experts predict with their raw logits.
"""
from __future__ import annotations

import numpy as np

from logit_lineage.common.errors import LineageError

LOSSES = ("ce", "logitadjust", "balsoftmax")


def logit_shift(loss: str, class_counts, tau: float = 1.0) -> np.ndarray:
    """The per-class offset added to the logits inside the loss (float64, [C])."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if (counts <= 0).any():
        raise LineageError("class_counts must all be positive for the long-tail losses")
    if loss == "ce":
        return np.zeros_like(counts)
    if loss == "logitadjust":
        return tau * np.log(counts / counts.sum())
    if loss == "balsoftmax":
        return np.log(counts)
    raise LineageError(f"unknown loss '{loss}' (expected one of {', '.join(LOSSES)})")


def make_loss(loss: str, class_counts, tau: float = 1.0):
    """A torch loss(logits, targets) -> mean loss for the given expert type."""
    import torch
    import torch.nn.functional as F

    shift = torch.as_tensor(logit_shift(loss, class_counts, tau), dtype=torch.float32)

    def loss_fn(logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        return F.cross_entropy(logits + shift.to(logits.device), targets)

    return loss_fn
