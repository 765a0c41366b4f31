"""One student training run: the same `KDTrainer` (a `transformers.Trainer`) for every
method, only the loss differs.

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

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema
from logit_lineage.student import METHODS

log = logging.getLogger("logit_lineage")

@dataclass
@defaults_from_schema("student")  # steps, batch_size, learning_rate, warmup_steps, weight_decay, grad_clip, precision
class TrainSettings:
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    precision: str  # float32, or bfloat16: mixed precision (TrainingArguments(bf16=True))
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
    # (step, held-out KL estimated from the shards) every curve_every steps, first and last included
    curve: list[tuple[int, float]] = field(default_factory=list)


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


def method_trainer_args(method: str, teacher=None) -> dict:
    """`KDTrainer` keyword arguments of a method (`dense` needs the teacher)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dense":
        if teacher is None:
            raise ValueError("method 'dense' needs the teacher")
        return {"kind": "forward_kl", "alpha": 1.0, "teacher": teacher, "targets": "teacher"}
    if method == "sft":
        return {"kind": "forward_kl", "alpha": 0.0}
    return {"kind": "forward_kl", "alpha": 1.0, "estimator": "topk" if method == "topk" else "unbiased"}


def train_student(model, items: list[dict], order: np.ndarray, method: str, settings: TrainSettings, *,
                  device, teacher=None, pad_id: int = 0, vocab_size: int | None = None,
                  heldout: list[dict] | None = None, curve_every: int = 0,
                  eval_batch_size: int = 32) -> TrainResult:
    """Train `model` in place on `items` in `order` ([steps, batch_size] positions), through
    `logit_lineage.kd.KDTrainer` (a `transformers.Trainer`): the users' training path.

    `teacher`: the dense teacher, a model or its dumped logits (`kd.dense.DenseLogits`);
    method dense trains on it. With `heldout` and curve_every > 0, the learning curve: the
    held-out KL before training, every curve_every steps and after the last step; exact
    against the dumped logits when `teacher` is a `DenseLogits` (every method), else
    estimated from the shards' records (unbiased; the same estimate for every method, no
    teacher forward)."""
    import tempfile

    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from logit_lineage.kd.dense import DenseLogits
    from logit_lineage.kd.trainer import KDDataCollator, KDTrainer, as_ordered_dataset

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dense" and teacher is None:
        raise ValueError("method 'dense' needs the teacher")
    if settings.precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16, got {settings.precision!r}")
    if order.shape != (settings.steps, settings.batch_size):
        raise ValueError(f"batch order has shape {order.shape}, settings say ({settings.steps}, {settings.batch_size})")
    device = torch.device(device)
    model.to(device).train()
    trained = [p for p in model.parameters() if p.requires_grad]  # frozen embeddings stay out
    opt = torch.optim.AdamW(trained, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, settings))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kdtrainer-") as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=settings.batch_size, max_steps=settings.steps,
            max_grad_norm=max(0.0, settings.grad_clip), logging_steps=settings.log_every,
            save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=device.type == "cpu",
            dataloader_num_workers=0, dataloader_pin_memory=False, per_device_eval_batch_size=eval_batch_size,
            bf16=settings.precision == "bfloat16",
            **({"eval_strategy": "steps", "eval_steps": curve_every} if heldout and curve_every > 0 else {}),
        )
        dumped = isinstance(teacher, DenseLogits)
        kwargs = method_trainer_args(method, teacher)
        if dumped:
            kwargs["teacher"] = teacher  # the exact held-out KL for every method's curve
        trainer = KDTrainer(model=model, args=args, train_dataset=as_ordered_dataset(items, order),
                            eval_dataset=heldout if heldout and curve_every > 0 else None,
                            eval_against="teacher" if dumped else "shards",
                            data_collator=KDDataCollator(vocab_size, pad_id=pad_id, labels=False),
                            optimizers=(opt, sched), **kwargs)
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        curve = {}
        if trainer.eval_dataset is not None:
            curve[0] = trainer.evaluate()["eval_kl_to_teacher"]  # train() starts a new log history
        trainer.train()
        curve.update((int(e["step"]), float(e["eval_kl_to_teacher"])) for e in trainer.state.log_history
                     if "eval_kl_to_teacher" in e)
        if trainer.eval_dataset is not None and settings.steps not in curve:
            curve[settings.steps] = trainer.evaluate()["eval_kl_to_teacher"]
    curve = sorted(curve.items())
    model.eval()
    losses = [v for _, v in trainer.loss_history()]
    if len(losses) != settings.steps:
        raise LineageError(f"{method}: trained {len(losses)} steps, {settings.steps} asked (too few examples?)")
    history = [(s, v) for s, v in enumerate(losses) if s % settings.log_every == 0 or s == settings.steps - 1]
    for s, v in history:
        log.info("%s step %d/%d loss %.4f", method, s + 1, settings.steps, v)
    picked = [items[int(i)] for i in order.reshape(-1)]
    tokens = sum(len(it["positions"]) for it in picked)
    teacher_tokens = 0
    if method == "dense" and not dumped:  # the padded batches the teacher ran on: the cost the shards save
        teacher_tokens = sum(settings.batch_size * max(len(items[int(i)]["input_ids"]) for i in row) for row in order)
    tail = losses[-max(1, len(losses) // 10):]
    return TrainResult(steps=settings.steps, tokens=tokens, examples=len(picked), teacher_tokens=teacher_tokens,
                       seconds=time.perf_counter() - start, final_loss=float(np.mean(tail)), losses=history,
                       curve=curve)
