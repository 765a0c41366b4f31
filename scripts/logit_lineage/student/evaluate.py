"""Held-out evaluation of a student against the dense teacher, at the stored positions.

For every stored (assistant) token of the held-out examples, at the row that predicts it:
- kl_to_teacher: KL(teacher ‖ student) = Σ_v p_v (log p_v − log s_v) over the whole
  vocabulary, nats, float64, the teacher computed on the fly (never from the shards);
- ce: −log s(token), the student's cross-entropy on the true token;
- top1_agree: the student's argmax equals the teacher's.
All are means over tokens (not over examples). The teacher's own CE and entropy on the same
tokens come along as references (KL = CE to the teacher's distribution − its entropy).

With `nucleus=(top_p, max_elements)` (the shards' compression), the KL is also split where
renormalised top-k targets differ from the teacher: `kl_beyond_nucleus` sums p_v (log p_v −
log s_v) over the ids outside the teacher's nucleus (the fewest top ids whose mass reaches
top_p, at most max_elements: `teacher.compress.nucleus_mask`, the extraction's own rule, so
exactly what the shards store as the nucleus and what `topk` keeps),
the rest of the KL is inside it; `teacher_mass_beyond_nucleus` and
`student_mass_beyond_nucleus` are the probability each puts there. A student trained on the
renormalised nucleus learns to put no mass beyond it, and pays for that in this part.
"""
from __future__ import annotations

import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.student.forward import make_batch, rows_logits, teacher_rows_logits
from logit_lineage.teacher.compress import nucleus_mask


@torch.no_grad()
def evaluate_heldout(student, teacher, items: list[dict], *, batch_size: int, pad_id: int = 0,
                     vocab_size: int | None = None, device="cpu",
                     nucleus: tuple[float, int] | None = None) -> dict:
    student.eval()
    sums = {"kl_to_teacher": 0.0, "ce": 0.0, "top1_agree": 0.0, "teacher_ce": 0.0, "teacher_entropy": 0.0}
    if nucleus is not None:
        sums.update(kl_beyond_nucleus=0.0, teacher_mass_beyond_nucleus=0.0, student_mass_beyond_nucleus=0.0)
    tokens = 0
    for a in range(0, len(items), batch_size):
        batch = make_batch(items[a : a + batch_size], pad_id=pad_id, vocab_size=vocab_size, device=device)
        t = teacher_rows_logits(teacher, batch)
        s = rows_logits(student, batch["input_ids"], batch["attention_mask"], batch["rows"])
        if s.shape != t.shape:
            raise LineageError(f"student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ in shape")
        lt = torch.log_softmax(t.double(), -1)
        ls = torch.log_softmax(s.double(), -1)
        pt = lt.exp()
        tok = batch["targets"].flat()["token_ids"][:, None]
        term = pt * (lt - ls)
        sums["kl_to_teacher"] += float(term.sum())
        if nucleus is not None:
            inside = nucleus_mask(lt, *nucleus)
            sums["kl_beyond_nucleus"] += float(term.masked_fill(inside, 0.0).sum())
            sums["teacher_mass_beyond_nucleus"] += float(pt.masked_fill(inside, 0.0).sum())
            sums["student_mass_beyond_nucleus"] += float(ls.exp().masked_fill(inside, 0.0).sum())
        sums["ce"] += float(-ls.gather(1, tok).sum())
        sums["top1_agree"] += float((s.argmax(-1) == t.argmax(-1)).sum())
        sums["teacher_ce"] += float(-lt.gather(1, tok).sum())
        sums["teacher_entropy"] += float(-(pt * lt).sum())
        tokens += int(t.shape[0])
    if tokens == 0:
        raise LineageError("the held-out examples hold no stored token")
    out = {k: v / tokens for k, v in sums.items()}
    out.update(tokens=tokens, examples=len(items))
    if nucleus is not None:
        out["nucleus"] = {"top_p": float(nucleus[0]), "max_elements": int(nucleus[1])}
    return out
