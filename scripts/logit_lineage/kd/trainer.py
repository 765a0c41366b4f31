"""Distillation from compressed logits with `transformers.Trainer`: `KDTrainer` and the
batch collator it uses, `KDDataCollator` (usable without the trainer). Needs torch and
transformers (the `[kd]` extra). docs/KD.md shows both in use.

`KDTrainer(model=, args=TrainingArguments(...), train_dataset=CompressedLogitsDataset(...))`
trains with

    loss = alpha · KD + (1 − alpha) · CE

per stored (assistant) token, where KD is `kd_loss(kind, estimator, temperature)` against the
shards' sparse targets (or, with `teacher=` and `targets="teacher"`, `dense_kd_loss` against a
dense teacher: a model run on the fly, or its logits dumped once, `kd.dense.DenseLogits`),
and CE is the cross-entropy on the true tokens
(`hard_label_loss`). What plain `Trainer` needs by hand, `KDTrainer` does itself: it keeps
the batch's extra keys (no `remove_unused_columns=False`), sets `max_steps` from the local
shards' row count (a streamed dataset has no length: give `max_steps`), moves
`SparseTargets` to the device, computes the loss, and logs `kd_loss` and `ce_loss` (token
means since the last log) beside `loss`.

Tokens are weighted the same with and without gradient accumulation: each micro-batch
contributes the sum of its per-token losses divided by the number of stored tokens in the
whole accumulated step (over every process when `average_tokens_across_devices`), so
accumulating k batches of b examples gives the gradient of one batch of k·b.

Student logits are computed at the rows that predict stored tokens only: the model runs
with `output_hidden_states=True, logits_to_keep=1` and its output head is applied to the
last hidden state at those rows (checked on the first batch against the model's own
logits; a model whose head does something else falls back to its full logits). Under
`bf16=True` / `fp16=True` the head runs in that dtype, as it does inside the model's own
forward under autocast (the fused head too); the loss math stays float32.

Processes (`accelerate launch`, `torchrun`): the dataset's own split wins. `KDTrainer` sets
a `CompressedLogitsDataset`'s `rank` / `world_size` to the process index and count (each
process then reads its own shards, or rows when there are fewer shards than processes and
workers) and its DataLoader is not sharded again by `accelerate`. A dataset built with a
`rank` / `world_size` that disagrees with the launch is refused. Other datasets: map-style
ones get a `DistributedSampler`; other iterable ones are sharded by `accelerate` as in
`Trainer`.

`evaluate()` reports held-out `kl_to_teacher` (the unbiased sparse estimate from the shards,
or the exact KL against `teacher=` when one is given), `ce` on the true tokens, `top1_agree`
(the student's argmax is the teacher's) and `tokens`, token means over `eval_dataset`.
"""
from __future__ import annotations

import copy
import inspect
import logging
import math
from collections import defaultdict

import numpy as np
import torch
from transformers import Trainer

from logit_lineage.common.errors import LineageError
from logit_lineage.kd.dataset import collate
from logit_lineage.kd.dense import DenseLogits
from logit_lineage.kd.fused import hard_label_loss_from_hidden, kd_loss_from_hidden
from logit_lineage.kd.losses import (
    _check_args,
    check_student_vocab,
    dense_kd_loss,
    hard_label_loss,
    kd_loss,
)
from logit_lineage.kd.targets import SparseTargets

log = logging.getLogger("logit_lineage")

TARGETS = ("shards", "teacher")


# --- the collator ---------------------------------------------------------------------------------


class KDDataCollator:
    """Items of a `CompressedLogitsDataset` (built with `input_ids_fn`) → one batch:

    input_ids [B, L] (right-padded with pad_id), attention_mask [B, L], targets
    (`SparseTargets`), index [B], and with labels=True `labels` [B, L]: the stored token at
    each stored position, −100 elsewhere (what a causal-LM loss or TRL's `SFTTrainer`
    expects; it counts the same tokens as the targets). Works in DataLoader workers.
    """

    def __init__(self, vocab_size: int | None = None, *, pad_id: int = 0, labels: bool = True):
        self.vocab_size, self.pad_id, self.labels = vocab_size, pad_id, labels

    def __call__(self, items: list[dict]) -> dict:
        batch = collate(items, pad_id=self.pad_id, vocab_size=self.vocab_size)
        if "input_ids" not in batch:
            raise LineageError("the dataset's items carry no input ids: build it with "
                               "input_ids_fn=conversation_input_ids(tokenizer, conversations)")
        if self.labels:
            t = batch["targets"]
            labels = torch.full_like(batch["input_ids"], -100)
            b = torch.arange(t.mask.shape[0])[:, None].expand_as(t.mask)
            labels[b[t.mask], t.positions[t.mask]] = t.token_ids[t.mask]
            batch["labels"] = labels
        return batch


# --- model helpers ----------------------------------------------------------------------------------


def student_vocab_size(model) -> int:
    """Rows of the model's output head (the logits' last dimension)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(cfg.vocab_size)


def check_vocab(model, teacher_vocab: int | None, what: str = "student") -> int:
    """The student's vocabulary, refused in one line when smaller than the teacher's."""
    vocab = student_vocab_size(model)
    try:
        check_student_vocab(vocab, teacher_vocab)
    except ValueError as exc:
        raise LineageError(f"{what} {type(model).__name__}: {exc}") from None
    return vocab


class _EpochLoader(torch.utils.data.DataLoader):
    """A DataLoader whose set_epoch reaches the dataset and the sampler (reshuffles)."""

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.dataset, getattr(self, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)


# --- the trainer ------------------------------------------------------------------------------------


class KDTrainer(Trainer):
    """`transformers.Trainer` for distillation from compressed logits (module docstring).

    kind: "forward_kl" | "ce" | "reverse_kl"; estimator: "unbiased" | "unbiased_exact_mass" |
    "topk" (docs/KD.md, "Estimators"); temperature: T (the KD term is scaled by T²); alpha:
    weight of the KD term, 1 − alpha of the CE on the true tokens (alpha 0 is plain SFT on
    the stored tokens). teacher: an optional dense teacher (a causal LM with the shards'
    tokenizer) or its logits computed once (`DenseLogits` over dense dumps), used for evaluation
    and, with targets="teacher", for the KD term too.
    fused_head: compute the KD and CE terms from the last hidden states and the output head's
    weight with `logit_lineage.kd.fused.kd_loss_from_hidden` (no [tokens, V] logits).
    eval_against: "auto" (the teacher when given, else the shards), "shards" (the unbiased
    sparse estimate of the held-out KL, cheap: no teacher forward) or "teacher".
    pad_id: padding id of the collator (default: the model's pad_token_id, else 0).
    Other keyword arguments go to `Trainer`.
    """

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, *, kind: str = "forward_kl",
                 estimator: str = "unbiased", temperature: float = 1.0, alpha: float = 1.0, teacher=None,
                 targets: str = "shards", eval_against: str = "auto", fused_head: bool = False,
                 pad_id: int | None = None, data_collator=None, **kwargs):
        try:
            _check_args(kind, estimator, temperature, "sum")  # kd_loss's own checks, as one-line errors
        except ValueError as exc:
            raise LineageError(str(exc)) from None
        if not 0.0 <= alpha <= 1.0:
            raise LineageError(f"alpha must be in [0, 1], got {alpha}")
        if targets not in TARGETS:
            raise LineageError(f"targets must be one of {TARGETS}, got {targets!r}")
        if eval_against not in ("auto", "shards", "teacher") or (eval_against == "teacher" and teacher is None):
            raise LineageError(f"eval_against must be 'auto', 'shards' or 'teacher' (with teacher=), got "
                               f"{eval_against!r}")
        if targets == "teacher" and teacher is None:
            raise LineageError("targets='teacher' needs teacher= (a dense teacher model)")
        if model is None:
            raise LineageError("KDTrainer needs model= (the student)")
        self.kind, self.estimator, self.temperature, self.alpha = kind, estimator, float(temperature), float(alpha)
        self.teacher, self.targets, self.fused_head = teacher, targets, fused_head
        self.eval_against = eval_against
        teacher_vocab = None
        for ds in (train_dataset, *(eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset])):
            if ds is not None and getattr(ds, "vocab_size", None) is not None:
                teacher_vocab = max(teacher_vocab or 0, int(ds.vocab_size))
        if isinstance(teacher, DenseLogits):
            teacher_vocab = max(teacher_vocab or 0, teacher.vocab_size)
        elif teacher is not None:
            teacher.eval().requires_grad_(False)
            teacher_vocab = max(teacher_vocab or 0, student_vocab_size(teacher))
        self.student_vocab = check_vocab(model, teacher_vocab)
        self.teacher_vocab = teacher_vocab
        if pad_id is None:
            cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
            pad_id = cfg.pad_token_id if isinstance(getattr(cfg, "pad_token_id", None), int) else 0
        if data_collator is None:
            data_collator = KDDataCollator(teacher_vocab, pad_id=pad_id)
        if args is not None and train_dataset is not None:
            args = self._with_max_steps(args, train_dataset)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         data_collator=data_collator, **kwargs)
        self.loss_is_scaled_for_ga = True  # compute_loss divides by the accumulated step's token count
        if teacher is not None and not isinstance(teacher, DenseLogits):
            teacher.to(self.args.device)
        self._rows_ok: bool | None = None  # does head(last hidden state) give the model's logits?
        self._accepts_keep = "logits_to_keep" in inspect.signature(
            self.accelerator.unwrap_model(model).forward).parameters
        self._sums = defaultdict(float)  # token-weighted kd / ce sums since the last log
        self.step_losses: dict[int, float] = defaultdict(float)  # optimizer step → its loss (token mean)

    # -- arguments and data --

    @staticmethod
    def _with_max_steps(args, dataset):
        """A copy of args with max_steps from the local shards' row count when it is not set."""
        if args.max_steps > 0 or hasattr(dataset, "__len__"):
            return args
        n = getattr(dataset, "num_examples", None)
        if n is None:
            raise LineageError(f"the training data ({type(dataset).__name__}) is streamed and has no length: "
                               "set TrainingArguments(max_steps=…)")
        world = max(1, args.world_size)
        batches = math.ceil(math.ceil(n / world) / args.per_device_train_batch_size)
        args = copy.copy(args)
        args.max_steps = max(1, math.ceil(args.num_train_epochs * batches / args.gradient_accumulation_steps))
        log.info("KDTrainer: %d examples, %d steps (%g epochs)", n, args.max_steps, args.num_train_epochs)
        return args

    def _remove_unused_columns(self, dataset, description=None):
        return dataset  # the batch's targets are no model input, and must stay

    def _get_collator_with_removed_columns(self, data_collator, description=None):
        return data_collator

    def _split_for_processes(self, dataset) -> bool:
        """Give a dataset with its own rank/world_size split this process's part; True when it
        splits itself (then accelerate must not shard the loader again)."""
        world, rank = self.args.world_size, self.args.process_index
        if not (hasattr(dataset, "rank") and hasattr(dataset, "world_size")):
            return False
        if world <= 1:
            return True
        if dataset.world_size == 1 and dataset.rank == 0:
            dataset.rank, dataset.world_size = rank, world
        elif (dataset.rank, dataset.world_size) != (rank, world):
            raise LineageError(f"the dataset was built with rank={dataset.rank}, world_size={dataset.world_size}, "
                               f"but this is process {rank} of {world}: leave rank/world_size unset, "
                               "KDTrainer sets them")
        return True

    def _loader(self, dataset, batch_size: int, *, training: bool):
        splits_itself = self._split_for_processes(dataset)
        is_iterable = isinstance(dataset, torch.utils.data.IterableDataset)
        if is_iterable and not splits_itself:  # accelerate shards it, as Trainer does
            if training:
                return super().get_train_dataloader()
            return super().get_eval_dataloader(dataset)
        workers = self.args.dataloader_num_workers
        params = {"batch_size": batch_size, "collate_fn": self.data_collator, "num_workers": workers,
                  "pin_memory": self.args.dataloader_pin_memory and self.args.device.type == "cuda"}
        if workers > 0:
            params.update(persistent_workers=self.args.dataloader_persistent_workers,
                          prefetch_factor=self.args.dataloader_prefetch_factor,
                          multiprocessing_context=self.args.dataloader_multiprocessing_context)
        if not is_iterable:
            g = torch.Generator().manual_seed(self.args.seed)
            if self.args.world_size > 1:
                params["sampler"] = torch.utils.data.DistributedSampler(
                    dataset, num_replicas=self.args.world_size, rank=self.args.process_index, shuffle=training,
                    seed=self.args.seed)
            elif training:
                params["sampler"] = torch.utils.data.RandomSampler(dataset, generator=g)
            params["drop_last"] = self.args.dataloader_drop_last
        return _EpochLoader(dataset, **params)

    def get_train_dataloader(self):
        if self.train_dataset is None:
            raise LineageError("KDTrainer: training needs train_dataset=")
        return self._loader(self.train_dataset, self._train_batch_size, training=True)

    def get_eval_dataloader(self, eval_dataset=None):
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(ds, str):
            ds = self.eval_dataset[ds]
        if ds is None:
            raise LineageError("KDTrainer: evaluation needs eval_dataset=")
        return self._loader(ds, self.args.eval_batch_size, training=False)

    def _prepare_input(self, data):
        if isinstance(data, SparseTargets):
            return data.to(self.args.device)
        return super()._prepare_input(data)

    def _get_num_items_in_batch(self, batch_samples, device):
        """Stored tokens in the accumulated step (all processes' when averaging across devices)."""
        count = sum(int(b["targets"].num_tokens) for b in batch_samples if "targets" in b)
        count = torch.tensor(count, device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return count

    # -- the student's logits at the stored rows --

    def _student_rows(self, model, batch, need_logits: bool = False) -> tuple[torch.Tensor | None,
                                                                              torch.Tensor | None]:
        """(logits [N, V] or None, last hidden states [N, d] or None) at the rows predicting the
        stored tokens, in `targets.flat()` order."""
        from logit_lineage.teacher.load import head_logits

        ids, mask, targets = batch["input_ids"], batch["attention_mask"], batch["targets"]
        b, t = targets.student_index(ids.shape[1])
        unwrapped = self.accelerator.unwrap_model(model)
        if self._rows_ok is not False:
            kw = {"logits_to_keep": 1} if self._accepts_keep else {}
            out = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True, **kw)
            hidden = out.hidden_states[-1] if out.hidden_states is not None else None
            if self._rows_ok is None:
                with self.accelerator.autocast():
                    self._rows_ok = hidden is not None and self._head_matches(unwrapped, hidden, out.logits)
                if not self._rows_ok:
                    log.warning("KDTrainer: %s's head on its last hidden state differs from its logits; "
                                "using its full logits", type(unwrapped).__name__)
            if self._rows_ok:
                h = hidden[b, t]
                if self.fused_head and self.targets == "shards" and not need_logits:
                    return None, h
                with self.accelerator.autocast():  # as the model's own forward runs its head
                    return head_logits(unwrapped, h), h
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        return logits[b, t].float(), None

    @staticmethod
    @torch.no_grad()
    def _head_matches(model, hidden, logits) -> bool:
        from logit_lineage.teacher.load import head_logits

        exact = logits.dtype == torch.float32 and not torch.is_autocast_enabled(logits.device.type)
        ref = logits[:, -1].float()
        ours = head_logits(model, hidden[:, -1])
        tol = 1e-3 * max(1.0, float(ref.abs().max())) if exact else 5e-2 * max(1.0, float(ref.abs().max()) / 8)
        return ours.shape == ref.shape and float((ours - ref).abs().max()) <= max(tol, 1e-3)

    @torch.no_grad()
    def _teacher_rows(self, batch) -> torch.Tensor:
        from logit_lineage.teacher.load import decoder_hidden, head_logits

        ids, targets = batch["input_ids"], batch["targets"]
        if isinstance(self.teacher, DenseLogits):
            return self.teacher.rows(batch["index"], targets)
        b, t = targets.student_index(ids.shape[1])
        hidden = decoder_hidden(self.teacher, ids, batch["attention_mask"])
        return head_logits(self.teacher, hidden[b, t])

    def _fused_head_inputs(self, model, hidden):
        """(hidden, head weight, head bias) for the fused losses, which compute in their inputs'
        dtype: under bf16 / fp16 mixed precision in that dtype, as autocast runs the head."""
        head = self.accelerator.unwrap_model(model).get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.accelerator.mixed_precision))
        if dtype is None:
            return hidden, weight, bias
        return hidden.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)

    def _kd_sum(self, logits, hidden, batch, model) -> torch.Tensor:
        targets = batch["targets"]
        if self.targets == "teacher":
            return dense_kd_loss(logits, self._teacher_rows(batch), kind=self.kind, temperature=self.temperature,
                                 reduction="sum")
        if logits is None:  # fused head: no [N, V] logits
            hidden, weight, bias = self._fused_head_inputs(model, hidden)
            return kd_loss_from_hidden(hidden, weight, targets, bias=bias, kind=self.kind, estimator=self.estimator,
                                       temperature=self.temperature, reduction="sum")
        return kd_loss(logits, targets, kind=self.kind, estimator=self.estimator, temperature=self.temperature,
                       reduction="sum")

    # -- loss, logging, evaluation --

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets = inputs["targets"]
        n = targets.num_tokens
        logits, hidden = self._student_rows(model, inputs)
        total = None
        if self.alpha > 0:
            kd = self._kd_sum(logits, hidden, inputs, model)
            total = self.alpha * kd
            self._sums["kd"] += float(kd.detach())
        if self.alpha < 1 or logits is not None:
            ce_on = self.alpha < 1
            with torch.set_grad_enabled(ce_on and torch.is_grad_enabled()):
                if logits is None:  # fused head
                    h, weight, bias = self._fused_head_inputs(model, hidden)
                    ce = hard_label_loss_from_hidden(h, weight, targets, bias=bias, reduction="sum")
                else:
                    ce = hard_label_loss(logits, targets, reduction="sum")
            if ce_on:
                total = (1.0 - self.alpha) * ce if total is None else total + (1.0 - self.alpha) * ce
            self._sums["ce"] += float(ce.detach())
        self._sums["tokens"] += n
        denom = float(num_items_in_batch) if num_items_in_batch is not None else float(max(n, 1))
        loss = total / max(denom, 1.0)
        if (num_items_in_batch is not None and self.args.average_tokens_across_devices
                and self.args.world_size > 1):
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        if model.training:
            value = float(loss.detach())
            if not math.isfinite(value):
                raise LineageError(f"loss is {value} at step {self.state.global_step}")
            self.step_losses[self.state.global_step] += value / (
                self.accelerator.num_processes if self.args.world_size > 1 else 1)
        return (loss, {"logits": logits}) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._sums["tokens"] > 0:
            tokens = self._sums["tokens"]
            if "kd" in self._sums:
                logs["kd_loss"] = round(self._sums["kd"] / tokens, 6)
            if "ce" in self._sums:
                logs["ce_loss"] = round(self._sums["ce"] / tokens, 6)
            self._sums.clear()
        super().log(logs, *args, **kwargs)

    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Held-out token means: kl_to_teacher, ce, top1_agree, and the token count."""
        loader = self.get_eval_dataloader(eval_dataset)
        model = self.model
        was_training = model.training
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.args.device)  # kl, ce, top1, tokens
        with self.compute_loss_context_manager():
            for batch in loader:
                batch = self._prepare_inputs(batch)
                targets = batch["targets"]
                logits = self._student_rows(model, batch, need_logits=True)[0].float()
                if self.teacher is not None and self.eval_against != "shards":
                    t_logits = self._teacher_rows(batch).double()
                    kl = dense_kd_loss(logits.double(), t_logits, kind="forward_kl", reduction="sum")
                    t_top = t_logits.argmax(-1)
                else:
                    kl = kd_loss(logits, targets, kind="forward_kl", estimator="unbiased", reduction="sum")
                    f = targets.flat()
                    ok = torch.arange(f["nucleus_ids"].shape[1], device=logits.device) < f["nucleus_counts"][:, None]
                    best = torch.where(ok, f["nucleus_probs"], -1.0).argmax(1, keepdim=True)
                    t_top = f["nucleus_ids"].gather(1, best).squeeze(1)
                ce = hard_label_loss(logits, targets, reduction="sum")
                top1 = (logits.argmax(-1) == t_top).sum()
                sums += torch.stack([kl.double(), ce.double(), top1.double(),
                                     torch.tensor(float(targets.num_tokens), dtype=torch.float64,
                                                  device=sums.device)])
        if self.args.world_size > 1:
            sums = self.accelerator.reduce(sums, reduction="sum")
        tokens = float(sums[3])
        if tokens == 0:
            raise LineageError("the evaluation data hold no stored token")
        p = metric_key_prefix
        metrics = {f"{p}_kl_to_teacher": float(sums[0]) / tokens, f"{p}_ce": float(sums[1]) / tokens,
                   f"{p}_top1_agree": float(sums[2]) / tokens, f"{p}_tokens": int(tokens)}
        if was_training:
            model.train()
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def loss_history(self) -> list[tuple[int, float]]:
        """(optimizer step, loss) of every step trained, the loss a token mean over the step."""
        return [(s, v) for s, v in sorted(self.step_losses.items())]


def as_ordered_dataset(items: list[dict], order: np.ndarray) -> torch.utils.data.IterableDataset:
    """An iterable over `items` in a fixed order (`order` [steps, batch] positions into items):
    with batch size `order.shape[1]` and no workers, step s sees exactly items[order[s]]."""

    class _Ordered(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in order.reshape(-1):
                yield items[int(i)]

    return _Ordered()


__all__ = ["KDDataCollator", "KDTrainer", "as_ordered_dataset", "check_vocab", "student_vocab_size"]
