"""The forward passes the student chain shares: a padded batch on a device, and student and
teacher logits at the rows that predict the stored tokens only (row t−1 for the token at
position t, `SparseTargets.student_rows`), so the lm head never runs on prompt rows."""
from __future__ import annotations

import torch

from logit_lineage.common.errors import LineageError


def make_batch(items: list[dict], *, pad_id: int, vocab_size: int | None, device) -> dict:
    """Example indices, padded input ids, attention mask, SparseTargets and the student rows,
    on `device`."""
    from logit_lineage.kd.dataset import collate

    batch = collate(items, pad_id=pad_id, vocab_size=vocab_size)
    if "input_ids" not in batch:
        raise LineageError("training examples carry no input ids")
    targets = batch["targets"]
    rows = targets.student_rows(batch["input_ids"].shape[1])
    return {
        "index": batch["index"],
        "input_ids": batch["input_ids"].to(device),
        "attention_mask": batch["attention_mask"].to(device),
        "targets": targets.to(device),
        "rows": rows.to(device),
    }


def rows_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The student's logits [N, V] at flat rows (b·L + t) only: the lm head skips the rest."""
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return model.lm_head(hidden.reshape(-1, hidden.shape[-1])[rows])


@torch.no_grad()
def teacher_rows_logits(teacher, batch: dict) -> torch.Tensor:
    """The teacher's logits [N, V] (float32) at the batch's student rows, exactly as its forward
    computes them, or read from its dense dumps (`kd.dense.DenseLogits`)."""
    from logit_lineage.kd.dense import DenseLogits
    from logit_lineage.teacher.load import decoder_hidden, head_logits

    if isinstance(teacher, DenseLogits):
        return teacher.rows(batch["index"], batch["targets"])
    input_ids, attention_mask, rows = batch["input_ids"], batch["attention_mask"], batch["rows"]
    hidden = decoder_hidden(teacher, input_ids, attention_mask)
    return head_logits(teacher, hidden.reshape(-1, hidden.shape[-1])[rows])
