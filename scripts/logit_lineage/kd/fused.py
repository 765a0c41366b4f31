"""Fused-linear sparse KD losses: the student's head matmul and `kd_loss` in one chunked pass.

`kd_loss_from_hidden(hidden, weight, targets, …)` is `kd_loss(hidden @ weight.T + bias,
targets, …)` for every kind × estimator × temperature, value and gradients (with respect to
`hidden`, `weight` and `bias`), without ever making the [tokens, V] logits or their gradient.
Rows are taken `chunk_rows` at a time: the chunk's logits z = h W^T + b ([chunk, V] float32)
are computed, the per-row value and its gradient G = ∂loss/∂z are made in that same buffer by
the per-chunk maths of `kd/losses.py` (`_linear_value` / `_linear_grad` for CE and forward KL,
`_reverse_value` / `_reverse_grad` for reverse KL, `_topk_reverse` for the top-k reverse KL),
and the buffer is consumed by ∂hidden = G W and ∂W += G^T h, ∂b += Σ_rows G. So at most one
[chunk, V] float32 block is alive (two for reverse KL, which halves the rows per step, as
`kd_loss` does; one more in the input dtype when the head is not float32).

When the loss is reduced ("mean" / "sum") and a gradient is wanted, the gradients are made
during the forward pass, like Liger Kernel's fused linear cross-entropy: the backward only
scales them by the incoming scalar. That is three matmuls of the head's size per step, the
same count as the unfused head + loss (one forward, two backward). With reduction="none" the
incoming gradient differs per row, so the forward keeps nothing but the inputs and the backward
recomputes the logits chunk by chunk (four matmuls). The gradients are accumulated in float32
and returned in the inputs' dtypes. Plain PyTorch: runs on CPU and GPU alike.

With a Hugging Face causal LM: `hidden = model.model(input_ids, attention_mask=…).last_hidden_state`
(or `model(…, output_hidden_states=True).hidden_states[-1]`), `weight = model.lm_head.weight`
(tied embeddings are fine: autograd adds the head's gradient to the embedding's).
"""
from __future__ import annotations

import torch

from logit_lineage.kd.losses import (
    _check_args,
    _check_vocab,
    _hard_label_plan,
    _linear_grad,
    _linear_value,
    _Plan,
    _plan,
    _reduce,
    _reverse_grad,
    _reverse_value,
    _topk_reverse,
    default_chunk_rows,
)
from logit_lineage.kd.targets import SparseTargets

_TOPK_KEYS = ("nucleus_counts", "nucleus_logprobs", "nucleus_step", "tail_step")


def _chunk_rows_of(plan: _Plan, chunk: int) -> int:
    return max(1, chunk // 2) if plan.form == "reverse" else chunk


def _logits_into(buf: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """z = h W^T + b for one chunk, as float32 in `buf` (computed in the inputs' dtype)."""
    if h.dtype == torch.float32 and weight.dtype == torch.float32 and (bias is None or bias.dtype == torch.float32):
        if bias is None:
            return torch.mm(h, weight.t(), out=buf)
        return torch.addmm(bias, h, weight.t(), out=buf)
    z = torch.mm(h, weight.t()) if bias is None else torch.addmm(bias, h, weight.t())
    return buf.copy_(z)


def _chunk_grad(plan: _Plan, f: dict, a: int, b: int, y: torch.Tensor, y2: torch.Tensor | None,
                temperature: float, row_scale: torch.Tensor | None) -> torch.Tensor:
    """Per-row values (float64) of rows a:b whose logits z are in y; with `row_scale` (float64
    [b − a], each row's weight in the gradient) each row of y is turned in place into
    scale·∂value/∂z, the rows of the gradient with respect to the chunk's logits."""
    t = temperature
    if plan.form == "topk_reverse":
        sub = {k: f[k][a:b] for k in _TOPK_KEYS if f.get(k) is not None}  # steps: version-3 values only
        kn = f["nucleus_ids"].shape[1]
        sub["nucleus_ids"] = torch.arange(kn, device=y.device).expand(b - a, kn)  # `picked` holds them in order
        ids = f["nucleus_ids"][a:b]
        picked = y.gather(1, ids)
        if row_scale is None:
            return _topk_reverse(picked, None, sub, t).double()
        with torch.enable_grad():
            picked.requires_grad_(True)
            kl = _topk_reverse(picked, None, sub, t)
            (g,) = torch.autograd.grad(kl, picked, row_scale.to(kl.dtype))
        y.zero_().scatter_add_(1, ids, g)  # padding entries (id 0) carry a zero gradient
        return kl.detach().double()
    if t != 1.0:
        y.div_(t)
    if plan.form == "reverse":
        ids, gamma, ok = (x[a:b] for x in plan.tensors)
        kl, _ = _reverse_value(y, y2, ids, gamma, ok)
        if row_scale is not None:
            _reverse_grad(y, y2, ids, gamma, kl, row_scale * t)
        return kl * t**2
    ids, alpha, mass = (x[a:b] for x in plan.tensors)
    value, _ = _linear_value(y, ids, alpha, mass)
    if row_scale is not None:  # y holds exp(z/T − max): softmax(z/T) = y / its row sums
        _linear_grad(y, ids, alpha, mass, (row_scale * t).float(), norm=1.0 / y.sum(1))
    return value * t**2


def _pass(hidden, weight, bias, plan: _Plan, f: dict, temperature: float, chunk: int,
          row_scale: torch.Tensor | None, needs: tuple[bool, bool, bool]):
    """One chunked pass: per-row values [N] float64 and, with `row_scale`, the gradients
    (∂hidden [N, d] in hidden's dtype, ∂W [V, d] and ∂b [V] in float32 or the head's wider dtype;
    None where not needed)."""
    n, vocab = hidden.shape[0], weight.shape[0]
    dev = hidden.device
    values = torch.empty(n, dtype=torch.float64, device=dev)
    rows_per = _chunk_rows_of(plan, chunk)
    buf = torch.empty((min(rows_per, max(n, 1)), vocab), dtype=torch.float32, device=dev)
    buf2 = torch.empty_like(buf) if plan.form == "reverse" else None
    grads = row_scale is not None
    g_h = torch.empty_like(hidden) if grads and needs[0] else None
    acc = torch.promote_types(weight.dtype, torch.float32)  # float32, or float64 for a float64 head
    new_w = torch.empty if n else torch.zeros  # the first chunk writes ∂W (no 0-fill of a head-sized tensor)
    g_w = new_w(weight.shape, dtype=acc, device=dev) if grads and needs[1] else None
    g_b = torch.zeros(vocab, dtype=acc, device=dev) if grads and needs[2] else None
    for a in range(0, n, rows_per):
        b = min(n, a + rows_per)
        h = hidden[a:b]
        y = _logits_into(buf[: b - a], h, weight, bias)
        y2 = None if buf2 is None else buf2[: b - a]
        values[a:b] = _chunk_grad(plan, f, a, b, y, y2, temperature, None if not grads else row_scale[a:b])
        if not grads:
            continue
        g = y if hidden.dtype == torch.float32 else y.to(hidden.dtype)
        if g_h is not None:
            if g.dtype == weight.dtype:
                torch.mm(g, weight, out=g_h[a:b])
            else:
                g_h[a:b] = torch.mm(g, weight.to(g.dtype))
        if g_w is not None:
            if g.dtype == g_w.dtype and h.dtype == g_w.dtype:
                if a == 0:
                    torch.mm(g.t(), h, out=g_w)
                else:
                    g_w.addmm_(g.t(), h)
            elif a == 0:
                g_w.copy_(torch.mm(g.t(), h.to(g.dtype)))
            else:
                g_w.add_(torch.mm(g.t(), h.to(g.dtype)))
        if g_b is not None:
            g_b.add_(g.sum(0) if g.dtype == g_b.dtype else y.sum(0))
    return values, g_h, g_w, g_b


class _FusedLinearKD(torch.autograd.Function):
    """Σ_rows (or per row, `eager` False) of the plan's values at z = hidden W^T + bias.

    eager: the gradients are made in the forward pass (the output is a scalar, so the
    backward only scales them); otherwise the backward recomputes the logits per chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, plan: _Plan, f: dict, temperature: float, chunk: int, eager: bool):
        needs = tuple(ctx.needs_input_grad[:3])
        ctx.eager = eager
        if eager:
            ones = torch.ones(hidden.shape[0], dtype=torch.float64, device=hidden.device)
            values, g_h, g_w, g_b = _pass(hidden, weight, bias, plan, f, temperature, chunk, ones, needs)
            ctx.grads = (g_h, g_w, g_b)
            ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
            return values.sum()
        values, *_ = _pass(hidden, weight, bias, plan, f, temperature, chunk, None, needs)
        ctx.save_for_backward(hidden, weight, bias)
        ctx.plan, ctx.f, ctx.temperature, ctx.chunk, ctx.needs = plan, f, temperature, chunk, needs
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if ctx.eager:
            if ctx.grads is None:
                raise RuntimeError("kd_loss_from_hidden: backward through the same loss twice is not supported "
                                   "(its gradients were made in the forward pass); compute the loss again")
            g_h, g_w, g_b = ctx.grads
            ctx.grads = None  # scaled in place and handed over: nothing head-sized stays with the graph
            s = grad_out.float()
            w_dtype, b_dtype = ctx.dtypes
            g_h = None if g_h is None else g_h.mul_(s.to(g_h.dtype))
            g_w = None if g_w is None else g_w.mul_(s).to(w_dtype)
            g_b = None if g_b is None else g_b.mul_(s).to(b_dtype)
        else:
            hidden, weight, bias = ctx.saved_tensors
            _, g_h, g_w, g_b = _pass(hidden, weight, bias, ctx.plan, ctx.f, ctx.temperature, ctx.chunk,
                                     grad_out.double(), ctx.needs)
            g_w = None if g_w is None else g_w.to(weight.dtype)
            g_b = None if g_b is None else g_b.to(bias.dtype)
        return g_h, g_w, g_b, None, None, None, None, None


def _hidden_rows(hidden: torch.Tensor, targets: SparseTargets, n: int) -> torch.Tensor:
    """The [N, d] hidden rows that predict the kept tokens, aligned as `kd_loss` aligns logits."""
    if hidden.dim() == 3:
        b, t = targets.student_index(hidden.shape[1])
        return hidden[b, t]  # a copy of N × d values; its backward scatters into [B, L, d]
    if hidden.dim() == 2:
        if hidden.shape[0] != n:
            raise ValueError(f"hidden states have {hidden.shape[0]} rows, targets keep {n} tokens")
        return hidden.contiguous()
    raise ValueError(f"hidden states must be [B, L, d] or [N, d], got {tuple(hidden.shape)}")


def _fused(hidden, weight, bias, targets: SparseTargets, plan_of, temperature: float, reduction: str,
           chunk_rows: int | None) -> torch.Tensor:
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"head weight must be [V, {hidden.shape[-1]}] for hidden states of width "
                         f"{hidden.shape[-1]}, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"head bias must be [{weight.shape[0]}], got {tuple(bias.shape)}")
    dev = hidden.device
    targets = targets.to(dev)
    f = targets.flat()
    n = f["positions"].shape[0]
    _check_vocab(weight.shape[0], targets, "the head weight has")
    rows = _hidden_rows(hidden, targets, n)
    plan = plan_of(f)
    if plan.form != "linear" and targets.vocab_size is not None and weight.shape[0] > targets.vocab_size:
        # reverse KL of a padded head: the student restricted to the teacher's ids (`check_student_vocab`)
        weight = weight[: targets.vocab_size]
        bias = None if bias is None else bias[: targets.vocab_size]
    vocab = weight.shape[0]
    chunk = chunk_rows or default_chunk_rows(vocab)
    wants_grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (hidden, weight, bias))
    eager = wants_grad and reduction != "none"
    out = _FusedLinearKD.apply(rows, weight, bias, plan, f, float(temperature), chunk, eager)
    if eager:  # the scalar Σ_rows; the per-row offsets are constants of the student
        total = out if plan.offset is None else out + plan.offset.sum()
        return (total if reduction == "sum" else total / max(n, 1)).float()
    per_row = out if plan.offset is None else out + plan.offset
    return _reduce(per_row, n, reduction)


def kd_loss_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: SparseTargets,
    *,
    bias: torch.Tensor | None = None,
    kind: str = "forward_kl",
    estimator: str = "unbiased",
    temperature: float = 1.0,
    reduction: str = "mean",
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """`kd_loss(hidden @ weight.T + bias, targets, …)` without the [tokens, V] logits.

    hidden: the student's last hidden states, [B, L, d] (row t − 1 predicts the stored token at
    position t, as `kd_loss` reads [B, L, V] logits) or [N, d] with one row per kept token in
    `targets.flat()` order. weight: the head, [V, d] (V ≥ the teacher's vocabulary); bias: [V]
    or None. kind, estimator, temperature, reduction: as `kd_loss` (same estimators, same T²
    scaling, the same float32 maths per chunk). chunk_rows: rows per step (default: a 256 MiB
    float32 [chunk, V] block; reverse KL takes half as many rows and two blocks).
    Gradients flow to hidden, weight and bias (whichever require them).
    """
    _check_args(kind, estimator, temperature, reduction)
    return _fused(hidden, weight, bias, targets, lambda f: _plan(f, kind, estimator, temperature), temperature,
                  reduction, chunk_rows)


def hard_label_loss_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: SparseTargets, *,
                                bias: torch.Tensor | None = None, reduction: str = "mean",
                                chunk_rows: int | None = None) -> torch.Tensor:
    """`hard_label_loss(hidden @ weight.T + bias, targets)` (cross-entropy on the stored tokens)
    without the [tokens, V] logits: same rows, chunking and gradients as `kd_loss_from_hidden`."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return _fused(hidden, weight, bias, targets, _hard_label_plan, 1.0, reduction, chunk_rows)
