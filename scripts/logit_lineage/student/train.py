"""One student training run: the same loop for every method, only the loss differs.

Per step, the batch's conversations go through the student; its logits are taken at the
rows that predict the stored tokens (row t−1 for the token at position t, as
`SparseTargets.student_rows` gives them), and compared with
- `dense`: the teacher's full distribution at the same rows (teacher forward, no grad),
  forward KL (`kd.dense_kd_loss`);
- `compressed`: the stored records, forward KL, unbiased estimator (`kd.kd_loss`);
- `topk`: the stored nucleus renormalised, tail dropped (`kd.kd_loss(estimator="topk")`);
- `sft`: the stored tokens themselves, cross-entropy (`kd.hard_label_loss`).
Losses are means over the batch's stored tokens. AdamW, linear warmup then cosine decay to
10 % of the peak learning rate, gradient clipping. No dropout: with the same seed, weights
and batches, the methods differ in their targets alone.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema
from logit_lineage.student import METHODS
from logit_lineage.student.forward import make_batch, rows_logits, teacher_rows_logits

log = logging.getLogger("logit_lineage")

@dataclass
@defaults_from_schema("student")  # steps, batch_size, learning_rate, warmup_steps, weight_decay, grad_clip
class TrainSettings:
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    log_every: int = 50


@dataclass
class TrainResult:
    steps: int
    tokens: int  # stored (assistant) tokens trained on, summed over steps
    examples: int  # examples seen, summed over steps
    teacher_tokens: int  # padded tokens the teacher ran on (dense only): the cost the shards save
    seconds: float  # the loop's wall time; logged, never written to a result (results are reproducible)
    final_loss: float  # mean of the last 10 % of the steps' losses
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) every log_every steps


def method_loss(method: str, student_logits: torch.Tensor, targets, teacher_logits: torch.Tensor | None = None):
    """Mean loss over the stored tokens; `student_logits` [N, V] in `targets.flat()` order."""
    from logit_lineage.kd import dense_kd_loss, hard_label_loss, kd_loss

    if method == "dense":
        if teacher_logits is None:
            raise ValueError("method 'dense' needs the teacher's logits")
        return dense_kd_loss(student_logits, teacher_logits, kind="forward_kl")
    if method == "compressed":
        return kd_loss(student_logits, targets, kind="forward_kl", estimator="unbiased")
    if method == "topk":
        return kd_loss(student_logits, targets, kind="forward_kl", estimator="topk")
    if method == "sft":
        return hard_label_loss(student_logits, targets)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def lr_factor(step: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_student(model, items: list[dict], order: np.ndarray, method: str, settings: TrainSettings, *,
                  device, teacher=None, pad_id: int = 0, vocab_size: int | None = None) -> TrainResult:
    """Train `model` in place on `items` in `order` ([steps, batch_size] positions)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dense" and teacher is None:
        raise ValueError("method 'dense' needs the teacher")
    if order.shape != (settings.steps, settings.batch_size):
        raise ValueError(f"batch order has shape {order.shape}, settings say ({settings.steps}, {settings.batch_size})")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, settings))
    losses, history, tokens, examples, teacher_tokens = [], [], 0, 0, 0
    start = time.perf_counter()
    bar = tqdm(range(settings.steps), desc=f"train {method}", mininterval=2.0)
    for step in bar:
        batch = make_batch([items[i] for i in order[step]], pad_id=pad_id, vocab_size=vocab_size, device=device)
        targets = batch["targets"]
        teacher_logits = None
        if method == "dense":
            teacher_logits = teacher_rows_logits(teacher, batch["input_ids"], batch["attention_mask"], batch["rows"])
            teacher_tokens += batch["input_ids"].numel()
        logits = rows_logits(model, batch["input_ids"], batch["attention_mask"], batch["rows"])
        loss = method_loss(method, logits, targets, teacher_logits)
        if not torch.isfinite(loss):
            raise LineageError(f"{method}: loss is {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        sched.step()
        value = float(loss.detach())
        losses.append(value)
        tokens += targets.num_tokens
        examples += targets.batch_size
        if step % settings.log_every == 0 or step == settings.steps - 1:
            history.append((step, value))
            log.info("%s step %d/%d loss %.4f", method, step + 1, settings.steps, value)
        bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return TrainResult(steps=settings.steps, tokens=tokens, examples=examples, teacher_tokens=teacher_tokens,
                       seconds=time.perf_counter() - start, final_loss=float(np.mean(tail)), losses=history)
