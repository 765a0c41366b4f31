"""A gradient yardstick for sparse targets: how close is the gradient a student gets from a
sparse target to the gradient the dense teacher would give, on the same batches?

For every held-out batch b the student's parameter gradient is computed twice: from the
dense teacher's distribution (g_b, `dense_kd_loss`) and from the shards' sparse target
with an estimator (s_b, `kd_loss`), both the mean forward KL over the batch's stored
tokens. Over B batches:

- cosine: the mean over batches of cos(s_b, g_b);
- relative bias: ‖mean_b (s_b − g_b)‖ / ‖mean_b g_b‖ with its standard error
  sqrt(Σ_b ‖d_b − d̄‖² / (B (B − 1))) / ‖mean_b g_b‖, d_b = s_b − g_b. An unbiased target
  has a bias of the order of its standard error, shrinking as 1/√B; a biased one (topk)
  keeps a bias that more batches do not remove;
- excess variance: mean_b ‖d_b − d̄‖² / mean_b ‖g_b − ḡ‖²: the sparse target's own
  variance beyond the dense minibatch gradient's variance over batches (0 for a perfect
  target; 0.1 means the sparse target adds a tenth to the minibatch noise SGD already has).

Only the parameters with requires_grad count; three vectors of their size are kept.
"""
from __future__ import annotations

import math

import torch

from logit_lineage.kd.losses import dense_kd_loss, kd_loss


def _flat_grad(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double()
                      for p in params])


def _student_rows(model, batch) -> torch.Tensor:
    from logit_lineage.teacher.load import decoder_hidden, head_logits

    targets = batch["targets"]
    b, t = targets.student_index(batch["input_ids"].shape[1])
    hidden = decoder_hidden(model, batch["input_ids"], batch["attention_mask"])
    return head_logits(model, hidden[b, t])


@torch.no_grad()
def _teacher_rows(teacher, batch) -> torch.Tensor:
    from logit_lineage.kd.dense import DenseLogits
    from logit_lineage.teacher.load import decoder_hidden, head_logits

    targets = batch["targets"]
    if isinstance(teacher, DenseLogits):
        return teacher.rows(batch["index"], targets)
    b, t = targets.student_index(batch["input_ids"].shape[1])
    return head_logits(teacher, decoder_hidden(teacher, batch["input_ids"], batch["attention_mask"])[b, t])


def gradient_yardstick(model, teacher, batches, *, estimators=("unbiased", "topk"), kind: str = "forward_kl",
                       temperature: float = 1.0) -> dict[str, dict]:
    """{estimator: {cosine, relative_bias, relative_bias_se, excess_variance, batches}} over
    `batches` (dicts from `KDDataCollator`, on the model's device). `teacher`: a causal LM run
    on each batch, or its dumped logits (`kd.dense.DenseLogits`). The model is left as it
    was (gradients cleared)."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no dropout: the two gradients differ by their targets alone
    sums = {e: {"d": None, "d2": 0.0, "cos": 0.0} for e in estimators}
    g_sum, g2, n = None, 0.0, 0
    for batch in batches:
        t_logits = _teacher_rows(teacher, batch)
        model.zero_grad(set_to_none=True)
        dense_kd_loss(_student_rows(model, batch), t_logits, kind=kind, temperature=temperature).backward()
        g = _flat_grad(params)
        g_sum = g.clone() if g_sum is None else g_sum.add_(g)
        g2 += float(g @ g)
        for est in estimators:
            model.zero_grad(set_to_none=True)
            kd_loss(_student_rows(model, batch), batch["targets"], kind=kind, estimator=est,
                    temperature=temperature).backward()
            s = _flat_grad(params)
            d = s - g
            acc = sums[est]
            acc["d"] = d.clone() if acc["d"] is None else acc["d"].add_(d)
            acc["d2"] += float(d @ d)
            acc["cos"] += float(s @ g) / max(float(s.norm() * g.norm()), 1e-300)
        n += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if n < 2:
        raise ValueError(f"the yardstick needs at least 2 batches, got {n}")
    g_mean = g_sum / n
    g_var = g2 / n - float(g_mean @ g_mean)  # mean ‖g_b − ḡ‖²
    out = {}
    for est, acc in sums.items():
        d_mean = acc["d"] / n
        d_var = acc["d2"] / n - float(d_mean @ d_mean)
        norm = float(g_mean.norm())
        out[est] = {
            "cosine": acc["cos"] / n,
            "relative_bias": float(d_mean.norm()) / norm,
            "relative_bias_se": math.sqrt(max(d_var, 0.0) * n / (n - 1) / n) / norm,
            "excess_variance": max(d_var, 0.0) / g_var if g_var > 0 else float("inf"),
            "batches": n,
        }
    return out


__all__ = ["gradient_yardstick"]
