"""Sparse knowledge-distillation losses on compressed teacher logits, chunked over rows.

`kd_loss(student_logits, targets, kind=…, estimator=…, temperature=T)` compares the
student's softmax(z / T) at every stored token with the teacher's tempered distribution
p_T ∝ p^(1/T), and multiplies by T² (Hinton et al.: gradients keep their scale across T).
Notation per token: nucleus N (exact p_i), tail sample S (p_j with weights w_j = p_j / q_j),
exact tail mass m = 1 − Σ_N p_i, student logits z over the vocabulary V.

kind="ce", "forward_kl" (forward KL = CE − H(p_T); the entropy is a constant of the student,
estimated with the same weights):

- estimator="unbiased", T = 1: **unbiased in value and gradient**. Horvitz–Thompson on
  log-probabilities: CE = −Σ_N p_i log s_i − Σ_{tail} p_i log s_i with s = softmax(z), and the
  tail sum is estimated by Σ_S w_j log s_j (priority-sampling weights w = p / q):
  CE ≈ −Σ_N p_i log s_i − Σ_S w_j log s_j, forward KL ≈ Σ_N p_i (log p_i − log s_i) +
  Σ_S w_j (log p_j − log s_j). Gradient: M·softmax(z) − p_N − w_S (scattered) with
  M = Σ_N p + Σ_S w (mean 1), whose expectation is softmax(z) − p. It depends on z only
  through log softmax(z): adding a constant to the logits changes nothing, the gradient sums
  to 0, and a student equal to the teacher gets KL estimate 0 whatever the sample.
- estimator="unbiased_exact_mass", T = 1: **unbiased in value and gradient**, the other
  natural form: CE = logsumexp(z) − Σ_N p_i z_i − Σ_{tail} p_i z_i with the tail sum
  estimated by Σ_S w_j z_j, so logsumexp(z) multiplies the exact total mass 1; gradient
  softmax(z) − p_N − w_S. Its value is not invariant to a logit offset: the error carries
  (m − Σ_S w)·logsumexp(z), so the value's spread grows with |logsumexp(z)| (measured: 1.5–10×
  the "unbiased" form's spread at V = 151,936, docs/KD.md), and its gradient has a component
  (m − Σ_S w) along the all-ones direction. The gradient's spread on the other directions is
  about the same as the "unbiased" form's (which adds (Σ_S w − m)·softmax(z) instead).
  For both forms the variance comes from the tail term only.
- estimator="unbiased" (or "unbiased_exact_mass"), T ≠ 1: **consistent, biased** (ratio estimator). p_T needs
  Z_T = Σ p^(1/T); Ẑ_T = Σ_N p^(1/T) + Σ_S w_j p_j^(1/T − 1) is unbiased, but the
  weights p_i^(1/T) / Ẑ_T and w_j p_j^(1/T−1) / Ẑ_T divide by an estimate, so value and
  gradient are biased by O(Var Ẑ_T / Z_T²); the bias vanishes as the tail sample grows and
  is 0 when the whole tail was kept. The weights sum to 1, so the gradient sums to 0.
  T < 1 shrinks the tail's share and the estimate is nearly exact; T > 1 is served poorly:
  the sample is drawn ∝ p, not ∝ p^(1/T), so the tempered tail (most of p_T at large V)
  is estimated from few, heavily weighted tokens (docs/KD.md: +26–40 % bias at T = 2).
- estimator="topk" (the renormalised top-k of other KD tools that store top-k logits):
  **biased**. The nucleus renormalised to 1 (p_i^(1/T) / Σ_N p^(1/T)), the tail dropped:
  the student is pulled to put no mass on the tail; the bias does not shrink with more data.

kind="reverse_kl", KL(s_T ‖ p_T) = Σ_v s_v log s_v − Σ_v s_v log p_T,v, with s_T the student's
full softmax (known exactly) and log p_T,v = log p_v / T − log Z_T:

- estimator="unbiased", T = 1: **unbiased in value and gradient**. Σ_v s_v log p_v is
  Σ_N s_i log p_i (exact) + Σ_{tail} s_v log p_v, and the tail sum is estimated by
  Σ_S (s_j / q_j) log p_j (Horvitz–Thompson: the tail weights w_j = p_j / q_j applied to
  f(j) = s_j log p_j / p_j). q does not depend on the student, so the gradient of the
  estimate is an unbiased estimate of the gradient. Its variance grows with s_j / p_j on
  the tail: small for a student close to the teacher, large when the student puts much
  more mass than the teacher on tokens the teacher rarely samples (a flat student early in
  training): the tail term is then heavy-tailed (docs/KD.md has figures).
- estimator="unbiased", T ≠ 1: the same estimate divided by T, minus log Ẑ_T (the ratio
  estimate above). **Gradient unbiased; value biased** by E[log Ẑ_T] − log Z_T, a constant
  of the student.
- estimator="topk": **biased**. Student and teacher both restricted to the nucleus and
  renormalised there (the top-k reverse KL of those tools); the student's mass outside the
  nucleus is not penalised at all.

Format version 3 (targets with `nucleus_step` / `tail_step`): the values are decoded from
8-bit codes with subtractive dither, so a value's error is uniform on a step-wide window and
independent of the value (docs/FORMAT.md). Every per-value term is read through `_undithered`:
p, p log p, p^(1/T), p^(1/T) log p and log p on the nucleus exactly unbiased (closed forms of
the window's mean), the tail weight w and w log p, log p / q, w p^(1/T − 1) to O(step⁴) (a
second-order correction); the ratios over a token (tempered and top-k weights, the entropy
over Ẑ_T, log Ẑ_T) have their second-order rounding bias removed (`_ratio`). `_forward_weights`
/ `_reverse_weights` / `_topk_reverse` do this, so every loss built on them (the fused form
too) gets it.

Memory: rows are processed `chunk_rows` at a time by custom autograd Functions whose
backward recomputes the softmax per chunk, so at most one [chunk_rows, V] float32 buffer
is alive besides the student logits and their gradient (reverse KL needs two, and halves
the rows per step to stay within the same budget). Nothing of size [tokens, V] is made
from the targets, and [B, L, V] logits are read in place (no reshape copy, no gather of
the kept rows). Per-row values are accumulated in float64 and returned as float32.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from logit_lineage.kd.targets import SparseTargets

KINDS = ("forward_kl", "ce", "reverse_kl")
ESTIMATORS = ("unbiased", "unbiased_exact_mass", "topk")
DEFAULT_CHUNK_BYTES = 256 * 2**20  # float32 buffer per step when chunk_rows is not given


def default_chunk_rows(vocab: int) -> int:
    return max(1, DEFAULT_CHUNK_BYTES // (4 * max(1, vocab)))


# --- the chunked row function ------------------------------------------------------------------


Rows = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def _select(logits: torch.Tensor, rows: Rows, a: int, b: int) -> torch.Tensor:
    """Selected rows a:b: logits[a:b] (rows None), rows of a 2-D view (a tensor of row
    indices), or (batch, position) pairs of a non-contiguous [B, L, V] tensor (a tuple)."""
    if rows is None:
        return logits[a:b]
    if isinstance(rows, tuple):
        return logits[rows[0][a:b], rows[1][a:b]]
    return logits.index_select(0, rows[a:b])


def _gather_rows(logits: torch.Tensor, rows: Rows, a: int, b: int, buf: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """Selected rows a:b as float32 z/T in `buf` (no other [rows, V] float32 tensor)."""
    out = buf[: b - a]
    if isinstance(rows, torch.Tensor) and logits.dtype == torch.float32:
        torch.index_select(logits, 0, rows[a:b], out=out)
    else:
        out.copy_(_select(logits, rows, a, b))
    if temperature != 1.0:
        out.div_(temperature)
    return out


def _add_rows(grad: torch.Tensor, rows: Rows, a: int, b: int, y: torch.Tensor) -> None:
    src = y if grad.dtype == torch.float32 else y.to(grad.dtype)
    if rows is None:
        grad[a:b] = src
    elif isinstance(rows, tuple):
        grad.index_put_((rows[0][a:b], rows[1][a:b]), src, accumulate=True)
    else:
        grad.index_add_(0, rows[a:b], src)


# --- the per-chunk maths (shared with the fused-linear form, kd/fused.py) -------------------------


def _linear_value(y: torch.Tensor, ids: torch.Tensor, alpha: torch.Tensor, mass: torch.Tensor):
    """Rows of Σ_k α_k (logsumexp − y_k) + (M − Σα)·logsumexp for y = z/T (float32 [r, V]).

    Returns (value float64 [r], logsumexp float32 [r]); y is consumed: it holds exp(y − max)
    afterwards (its row sums are exp(logsumexp − max))."""
    picked = y.gather(1, ids).double()
    mx = y.amax(1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, 0.0)
    y.sub_(mx).exp_()
    lse = mx.squeeze(1) + torch.log(y.sum(1))
    al = alpha.double()
    l64 = lse.double()
    value = torch.where(al > 0, al * (l64[:, None] - picked), 0.0).sum(1) + (mass - al.sum(1)) * l64
    return value, lse


def _linear_grad(s: torch.Tensor, ids: torch.Tensor, alpha: torch.Tensor, mass: torch.Tensor,
                 scale: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(z/T) rows s (float32 [r, V]) turned in place into scale·(M·s − scatter(α)): the
    gradient of the rows' values with respect to z when scale = T·(weight of each row).
    With `norm` (float32 [r]), s holds unnormalised rows exp(z/T − max) and softmax = s·norm:
    one pass over the rows instead of three."""
    if norm is None:
        s.mul_(mass.float()[:, None])
        s.scatter_add_(1, ids, -alpha)
        return s.mul_(scale[:, None])
    s.mul_((mass.float() * norm * scale)[:, None])
    return s.scatter_add_(1, ids, -alpha * scale[:, None])


def _reverse_value(y: torch.Tensor, s: torch.Tensor, ids: torch.Tensor, gamma: torch.Tensor, ok: torch.Tensor):
    """Rows of Σ_v s_v log s_v − Σ_k γ_k s_{id_k} for y = z/T (float32 [r, V]); s is a second
    [r, V] buffer. Returns (KL float64 [r], logsumexp float32 [r]); afterwards y holds log s and
    s holds softmax(y), what `_reverse_grad` needs."""
    mx = y.amax(1, keepdim=True)
    torch.sub(y, mx, out=s).exp_()
    lse = mx.squeeze(1) + torch.log(s.sum(1))
    y.sub_(lse[:, None])  # log s
    torch.exp(y, out=s)
    neg_ent = torch.bmm(s.unsqueeze(1), y.unsqueeze(2)).reshape(-1).double()
    s_k = torch.where(ok, s.gather(1, ids).double(), 0.0)
    return neg_ent - (s_k * gamma).sum(1), lse


def _reverse_grad(y: torch.Tensor, s: torch.Tensor, ids: torch.Tensor, gamma: torch.Tensor, kl: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """log s rows y turned in place into the gradient with respect to z: scale·s ⊙ (log s − KL) off
    the stored ids, scale·s ⊙ (log s − γ − KL) on them (scale float64 [r] = T·row weight)."""
    stored = s.gather(1, ids).double() * (y.gather(1, ids).double() - gamma - kl[:, None]) * scale[:, None]
    y.sub_(kl.float()[:, None]).mul_(s).mul_(scale.float()[:, None])
    return y.scatter_(1, ids, stored.float())


class _LinearTargetKD(torch.autograd.Function):
    """Per-row T²·(M·logsumexp(z/T) − Σ_k α_k z_{id_k}/T) for weights α over stored ids and a
    mass M per row, computed as Σ_k α_k (logsumexp − z_k/T) + (M − Σα)·logsumexp.

    Forward: logsumexp per row (one float32 [chunk, V] buffer, exp in place).
    Backward: T·g·(M·softmax(z/T) − scatter(α)), chunk by chunk, into the gradient of the logits.
    """

    @staticmethod
    def forward(ctx, logits2d, rows, ids, alpha, mass, temperature: float, chunk: int):
        n, vocab = ids.shape[0], logits2d.shape[-1]
        out = torch.empty(n, dtype=torch.float64, device=logits2d.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits2d.device)
        buf = torch.empty((min(chunk, max(n, 1)), vocab), dtype=torch.float32, device=logits2d.device)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            y = _gather_rows(logits2d, rows, a, b, buf, temperature)
            out[a:b], lse[a:b] = _linear_value(y, ids[a:b], alpha[a:b], mass[a:b])
        ctx.save_for_backward(logits2d, ids, alpha, mass, lse)
        ctx.rows, ctx.temperature, ctx.chunk = rows, temperature, chunk
        return out * temperature**2

    @staticmethod
    def backward(ctx, grad_rows):
        logits2d, ids, alpha, mass, lse = ctx.saved_tensors
        rows, t, chunk = ctx.rows, ctx.temperature, ctx.chunk
        grad = torch.empty_like(logits2d) if rows is None else torch.zeros_like(logits2d)  # None: all rows written
        n, vocab = ids.shape[0], logits2d.shape[-1]
        buf = torch.empty((min(chunk, max(n, 1)), vocab), dtype=torch.float32, device=logits2d.device)
        scale = grad_rows.float() * t
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            y = _gather_rows(logits2d, rows, a, b, buf, t)
            _linear_grad(y.sub_(lse[a:b, None]).exp_(), ids[a:b], alpha[a:b], mass[a:b], scale[a:b])
            _add_rows(grad, rows, a, b, y)
        return grad, None, None, None, None, None, None


class _ReverseKD(torch.autograd.Function):
    """Per-row T²·(Σ_v s_v log s_v − Σ_k γ_k s_{id_k}), s = softmax(z/T), γ over stored ids.

    Gradient T·g·s ⊙ (log s − KL) off the stored ids and T·g·s ⊙ (log s − γ − KL) on them.
    Padding entries (`ok` False) repeat the row's first stored id and γ, so the stored
    entries are written with one scatter (overwrite), without cancellation.
    """

    @staticmethod
    def forward(ctx, logits2d, rows, ids, gamma, ok, temperature: float, chunk: int):
        n, vocab = ids.shape[0], logits2d.shape[-1]
        dev = logits2d.device
        kl = torch.empty(n, dtype=torch.float64, device=dev)
        lse = torch.empty(n, dtype=torch.float32, device=dev)
        rows_per = max(1, chunk // 2)
        buf = torch.empty((min(rows_per, max(n, 1)), vocab), dtype=torch.float32, device=dev)
        buf2 = torch.empty_like(buf)
        for a in range(0, n, rows_per):
            b = min(n, a + rows_per)
            y = _gather_rows(logits2d, rows, a, b, buf, temperature)
            kl[a:b], lse[a:b] = _reverse_value(y, buf2[: b - a], ids[a:b], gamma[a:b], ok[a:b])
        ctx.save_for_backward(logits2d, ids, gamma, lse, kl)
        ctx.rows, ctx.temperature, ctx.chunk = rows, temperature, chunk
        return kl * temperature**2

    @staticmethod
    def backward(ctx, grad_rows):
        logits2d, ids, gamma, lse, kl = ctx.saved_tensors
        rows, t, chunk = ctx.rows, ctx.temperature, ctx.chunk
        grad = torch.empty_like(logits2d) if rows is None else torch.zeros_like(logits2d)
        n, vocab = ids.shape[0], logits2d.shape[-1]
        rows_per = max(1, chunk // 2)
        buf = torch.empty((min(rows_per, max(n, 1)), vocab), dtype=torch.float32, device=logits2d.device)
        buf2 = torch.empty_like(buf)
        scale = grad_rows.double() * t
        for a in range(0, n, rows_per):
            b = min(n, a + rows_per)
            y = _gather_rows(logits2d, rows, a, b, buf, t)
            s = buf2[: b - a]
            y.sub_(lse[a:b, None])
            torch.exp(y, out=s)
            _reverse_grad(y, s, ids[a:b], gamma[a:b], kl[a:b], scale[a:b])
            _add_rows(grad, rows, a, b, y)
        return grad, None, None, None, None, None, None


# --- per-row teacher weights ----------------------------------------------------------------------


def _grid(f: dict):
    """Format version 3's grid steps per row ([N, 1] float64 each), or None for exact values."""
    if f.get("nucleus_step") is None:
        return None
    return f["nucleus_step"].double()[:, None], f["tail_step"].double()[:, None]


def _tail_slopes(s_lp: torch.Tensor, w: torch.Tensor, s_ok: torch.Tensor):
    """a = d log w / d log p and a_ℓ = da / d log p of the tail weights w = p / q (float64).

    With r = e^(log p − κ̂) = −log(1 − q) (q = p / w): a = 1 − r / (e^r − 1), from ≈ r/2 (far
    below the threshold, w ≈ e^κ̂) to 1 (far above it, and κ̂ = −inf: w = p)."""
    q = torch.where(s_ok & (w > 0), torch.exp(s_lp) / w, 1.0).clamp(0.0, 1.0)
    r = -torch.log1p(-q)
    rr = r.clamp(1e-4, 40.0)
    em = torch.expm1(rr)
    a = torch.where(r < 1e-4, r / 2 - r * r / 12, torch.where(r > 40.0, 1.0, 1.0 - rr / em))
    a_l = torch.where(r < 1e-4, r / 2 - r * r / 6, torch.where(r > 40.0, 0.0, rr * (rr * torch.exp(rr) - em) / em**2))
    return a, a_l


def _window(b, step: torch.Tensor):
    """(S(b), D(b)) of the dither's step-wide window: E[e^(bℓ̂)] = e^(bℓ)·S(b) with
    S(b) = sinh(bh/2)/(bh/2), and D(b) = S'(b)/S(b) = (h/2)·coth(bh/2) − 1/b (both float64;
    S = 1, D = 0 at bh = 0). Series below |bh/2| = 1e-3 (relative error < 1e-13)."""
    b = torch.as_tensor(b, dtype=torch.float64, device=step.device)
    x = b * step / 2
    small = x.abs() < 1e-3
    xs = torch.where(small, 1.0, x)
    s = torch.where(small, 1 + x * x / 6 + x**4 / 120, torch.sinh(xs) / xs)
    d = torch.where(small, step / 2 * (x / 3 - x**3 / 45),
                    step / 2 * (1 / torch.tanh(xs) - 1 / xs))
    return s, d


def _undithered(g: torch.Tensor, ell: torch.Tensor, step: torch.Tensor, slopes, c: float, m: int) -> torch.Tensor:
    """An unbiased reading of ψ(ℓ) = g·ℓ^m (m = 0 or 1), g = W(ℓ)·e^(cℓ), from a dithered value
    ℓ̂ = ℓ + e, e uniform on [−h/2, h/2) (h = `step`; g and ell given at ℓ̂).

    slopes None: W = e^ℓ (the nucleus' p), ψ = e^(bℓ)ℓ^m with b = 1 + c, and the reading
    e^(bℓ̂)(ℓ̂ − D(b))^m / S(b) (`_window`) has expectation exactly ψ(ℓ). Otherwise W is the tail
    weight w(ℓ, κ̂) with slopes (a, a_ℓ) = (d log w/dℓ, da/dℓ) (`_tail_slopes`): the window's
    mean is ψ + h²/24·ψ'' + h⁴/1920·ψ'''' + …, and ψ(ℓ̂) − h²/24·ψ''(ℓ̂) leaves −7h⁴/5760·ψ''''
    (docs/FORMAT.md). step 0 (exact values) reads ψ(ℓ̂) as is.
    """
    if slopes is None:
        s, d = _window(1.0 + c, step)
        return g * (ell - d) ** m / s
    a, a_l = slopes
    b = torch.as_tensor(a, dtype=torch.float64, device=g.device) + c
    curv = b * b + torch.as_tensor(a_l, dtype=torch.float64, device=g.device)  # g''/g
    second = g * curv if m == 0 else g * (curv * ell + 2 * b)  # ψ''
    psi = g if m == 0 else g * ell
    return psi - step * step / 24 * second


def _ratio_terms(raw: torch.Tensor, b: torch.Tensor, step: torch.Tensor, ok: torch.Tensor):
    """Per-entry rounding variance of unbiased readings r̂ (second order: v = h²/12·(r b)², b =
    d log r/dℓ), and v itself summed per row: what the ratio corrections below need."""
    v = torch.where(ok, step * step / 12 * (raw * b) ** 2, 0.0)
    return v, v.sum(1)


def _ratio(raw: torch.Tensor, v: torch.Tensor, z: torch.Tensor, var_z: torch.Tensor) -> torch.Tensor:
    """E[r̂_i / Ẑ] to second order is r_i/Z·(1 + V/Z²) − v_i/Z² (independent dithers: Cov(r̂_i, Ẑ) =
    v_i); this reading of r_i / Z removes that bias. It keeps Σ_i = 1."""
    z = z[:, None]
    return raw / z * (1 - var_z[:, None] / z**2) + v / z**2


def _forward_weights(f: dict, estimator: str, temperature: float):
    """(ids [N, K], α [N, K] float32, −Ĥ(p_T) [N] float64) for the forward kinds. Σα = 1 except
    for the unbiased weights at T = 1, (p_N, w_S), whose sum m_N + Σ_S w has mean 1."""
    n_ok = torch.arange(f["nucleus_ids"].shape[1], device=f["nucleus_ids"].device) < f["nucleus_counts"][:, None]
    s_ok = torch.arange(f["tail_ids"].shape[1], device=f["tail_ids"].device) < f["tail_counts"][:, None]
    n_lp = f["nucleus_logprobs"].double()
    s_lp = f["tail_logprobs"].double()
    inv_t = 1.0 / temperature
    grid = _grid(f)
    if grid is not None:
        return _forward_weights_on_grid(f, estimator, temperature, n_ok, s_ok, grid)
    if estimator == "topk":
        a = torch.where(n_ok, n_lp * inv_t, -math.inf)
        log_alpha = a - torch.logsumexp(a, 1, keepdim=True)
        alpha_n = torch.where(n_ok, log_alpha.exp(), 0.0)
        neg_ent = torch.where(n_ok, alpha_n * log_alpha, 0.0).sum(1)
        ids = f["nucleus_ids"]
        return ids, alpha_n.float(), neg_ent
    w = f["tail_weights"].double()
    if temperature == 1.0:
        alpha_n = torch.where(n_ok, n_lp.exp(), 0.0)
        alpha_s = torch.where(s_ok, w, 0.0)
        neg_ent = (torch.where(n_ok, alpha_n * n_lp, 0.0).sum(1) + torch.where(s_ok, alpha_s * s_lp, 0.0).sum(1))
    else:
        raw_n = torch.where(n_ok, (n_lp * inv_t).exp(), 0.0)
        raw_s = torch.where(s_ok, w * (s_lp * (inv_t - 1.0)).exp(), 0.0)
        z_hat = raw_n.sum(1, keepdim=True) + raw_s.sum(1, keepdim=True)
        alpha_n, alpha_s = raw_n / z_hat, raw_s / z_hat
        log_z = torch.log(z_hat.squeeze(1))
        neg_ent = (torch.where(n_ok, alpha_n * n_lp, 0.0).sum(1)
                   + torch.where(s_ok, alpha_s * s_lp, 0.0).sum(1)) * inv_t - log_z
    ids = torch.cat([f["nucleus_ids"], f["tail_ids"]], 1)
    return ids, torch.cat([alpha_n, alpha_s], 1).float(), neg_ent


def _forward_weights_on_grid(f: dict, estimator: str, temperature: float, n_ok, s_ok, grid):
    """`_forward_weights` for values read from version-3 dithered codes: every per-entry term
    (p, w, p log p, w log p, p^(1/T), w p^(1/T − 1)) is read through `_undithered` (unbiased:
    exactly on the nucleus, to O(h⁴) on the tail); the ratios of the tempered and top-k weights
    and log Ẑ get their second-order rounding bias removed (`_ratio`)."""
    h_n, h_s = grid
    n_lp = torch.where(n_ok, f["nucleus_logprobs"].double(), 0.0)
    s_lp = torch.where(s_ok, f["tail_logprobs"].double(), 0.0)
    inv_t = 1.0 / temperature
    c = inv_t - 1.0
    g_n = torch.exp(inv_t * n_lp)  # p·e^(cℓ)
    raw_n = torch.where(n_ok, _undithered(g_n, n_lp, h_n, None, c, 0), 0.0)
    ent_n = torch.where(n_ok, _undithered(g_n, n_lp, h_n, None, c, 1), 0.0)
    b_n = torch.full_like(n_lp, inv_t)
    if estimator == "topk":
        return f["nucleus_ids"], *_tempered(raw_n, ent_n, b_n, n_lp, h_n, n_ok, inv_t)
    w = torch.where(s_ok, f["tail_weights"].double(), 0.0)
    slopes = _tail_slopes(s_lp, w, s_ok)
    g_s = w * torch.exp(c * s_lp)
    raw_s = torch.where(s_ok, _undithered(g_s, s_lp, h_s, slopes, c, 0), 0.0)
    ent_s = torch.where(s_ok, _undithered(g_s, s_lp, h_s, slopes, c, 1), 0.0)
    ids = torch.cat([f["nucleus_ids"], f["tail_ids"]], 1)
    if temperature == 1.0:  # α = (p, w) read without bias: linear in them, so is the loss
        return ids, torch.cat([raw_n, raw_s], 1).float(), ent_n.sum(1) + ent_s.sum(1)
    b_s = slopes[0] + c
    step = torch.cat([h_n.expand_as(n_lp), h_s.expand_as(s_lp)], 1)
    return ids, *_tempered(torch.cat([raw_n, raw_s], 1), torch.cat([ent_n, ent_s], 1), torch.cat([b_n, b_s], 1),
                           torch.cat([n_lp, s_lp], 1), step, torch.cat([n_ok, s_ok], 1), inv_t)


def _tempered(raw, ent, b, ell, step, ok, inv_t):
    """(α [N, K] float32, −Ĥ(p_T) [N] float64) from unbiased per-entry readings r̂ of p^(1/T) (or
    w p^(1/T − 1)) and ê of r·log p: α = r̂/Ẑ, −Ĥ = (Σê/Ẑ)/T − log Ẑ, each with its second-order
    rounding bias removed (independent dithers: Var Ẑ = Σ v, Cov(Σê, Ẑ) = Σ h²/12·r²b(1 + bℓ))."""
    v, var_z = _ratio_terms(raw, b, step, ok)
    z = raw.sum(1)
    alpha = _ratio(raw, v, z, var_z)
    cov = torch.where(ok, step * step / 12 * raw * raw * b * (1 + b * ell), 0.0).sum(1)
    ent_ratio = ent.sum(1) / z * (1 - var_z / z**2) + cov / z**2
    log_z = torch.log(z) + var_z / (2 * z**2)
    return alpha.float(), ent_ratio * inv_t - log_z


def _reverse_weights(f: dict, temperature: float):
    """(ids, γ [N, K] float64, ok [N, K], log Ẑ_T [N] float64) for the reverse KL.

    Σ_v s_v log p_T,v = (1/T)·Σ_v s_v log p_v − log Z_T, and Σ_v s_v log p_v is estimated
    without bias by Σ_N s_i log p_i + Σ_S (s_j / q_j) log p_j (Horvitz–Thompson with f = s·log p / p:
    w_j·f(j) = s_j log p_j / q_j). So γ = log p / T on the nucleus and log p / (q T) on the samples.
    Padding entries repeat the row's first stored id and γ (see `_ReverseKD`).
    """
    n_ok = torch.arange(f["nucleus_ids"].shape[1], device=f["nucleus_ids"].device) < f["nucleus_counts"][:, None]
    s_ok = torch.arange(f["tail_ids"].shape[1], device=f["tail_ids"].device) < f["tail_counts"][:, None]
    n_lp, s_lp = f["nucleus_logprobs"].double(), f["tail_logprobs"].double()
    w = f["tail_weights"].double()
    inv_q = torch.where(s_ok, w * torch.exp(-s_lp), 0.0)  # 1/q = w/p
    inv_t = 1.0 / temperature
    grid = _grid(f)
    if grid is None:
        gamma = torch.cat([torch.where(n_ok, n_lp, 0.0), inv_q * s_lp], 1) * inv_t
    else:  # version-3 dithered codes: log p̂ and log p̂ / q̂ read through `_undithered`
        n_lp, s_lp = torch.where(n_ok, n_lp, 0.0), torch.where(s_ok, s_lp, 0.0)
        slopes = _tail_slopes(s_lp, w, s_ok)
        gamma_n = _undithered(torch.ones_like(n_lp), n_lp, grid[0], None, -1.0, 1)
        gamma_s = _undithered(inv_q, s_lp, grid[1], slopes, -1.0, 1)
        gamma = torch.cat([torch.where(n_ok, gamma_n, 0.0), torch.where(s_ok, gamma_s, 0.0)], 1) * inv_t
    ok = torch.cat([n_ok, s_ok], 1)
    ids = torch.cat([f["nucleus_ids"], f["tail_ids"]], 1)
    if temperature == 1.0:
        log_z = torch.zeros(ids.shape[0], dtype=torch.float64, device=ids.device)  # Z_1 = 1 exactly
    elif grid is None:
        z_hat = (torch.where(n_ok, (n_lp * inv_t).exp(), 0.0).sum(1)
                 + torch.where(s_ok, w * (s_lp * (inv_t - 1.0)).exp(), 0.0).sum(1))
        log_z = torch.log(z_hat)
    else:
        c = inv_t - 1.0
        raw = torch.cat([torch.where(n_ok, _undithered(torch.exp(inv_t * n_lp), n_lp, grid[0], None, c, 0), 0.0),
                         torch.where(s_ok, _undithered(w * torch.exp(c * s_lp), s_lp, grid[1], slopes, c, 0), 0.0)], 1)
        b = torch.cat([torch.full_like(n_lp, inv_t), slopes[0] + c], 1)
        step = torch.cat([grid[0].expand_as(n_lp), grid[1].expand_as(s_lp)], 1)
        _, var_z = _ratio_terms(raw, b, step, ok)
        z = raw.sum(1)
        log_z = torch.log(z) + var_z / (2 * z**2)  # E[log Ẑ] = log Z − Var Ẑ/(2Z²) + O(h⁴)
    ids = torch.where(ok, ids, ids[:, :1])
    gamma = torch.where(ok, gamma, gamma[:, :1])
    return ids, gamma, ok, log_z


def _topk_reverse(logits2d: torch.Tensor, rows: Rows, f: dict, temperature: float) -> torch.Tensor:
    """Reverse KL on the nucleus only; gathers [N, Kn] student logits, nothing [N, V]."""
    ids = f["nucleus_ids"]
    n_ok = torch.arange(ids.shape[1], device=ids.device) < f["nucleus_counts"][:, None]
    if rows is None:
        picked = logits2d.gather(1, ids)
    elif isinstance(rows, tuple):
        picked = logits2d[rows[0][:, None], rows[1][:, None], ids]
    else:
        picked = logits2d[rows[:, None], ids]
    zs = torch.where(n_ok, picked.float() / temperature, -math.inf)
    ls = torch.where(n_ok, torch.log_softmax(zs, 1), 0.0)  # padding: 0, so no inf·0 in the backward
    grid = _grid(f)
    if grid is None:
        tp = torch.where(n_ok, f["nucleus_logprobs"].float() / temperature, -math.inf)
        lt = torch.where(n_ok, torch.log_softmax(tp, 1), 0.0)
    else:  # version-3 dithered codes: log p̂, p̂^(1/T) and log Ẑ read without their rounding bias
        n_lp = torch.where(n_ok, f["nucleus_logprobs"].double(), 0.0)
        inv_t = 1.0 / temperature
        raw = torch.where(n_ok, _undithered(torch.exp(inv_t * n_lp), n_lp, grid[0], None, inv_t - 1.0, 0), 0.0)
        _, var_z = _ratio_terms(raw, torch.full_like(n_lp, inv_t), grid[0].expand_as(n_lp), n_ok)
        z = raw.sum(1, keepdim=True)
        log_z = torch.log(z) + var_z[:, None] / (2 * z**2)
        lt = torch.where(n_ok, n_lp * inv_t - log_z, 0.0).float()
    kl = torch.where(n_ok, ls.exp() * (ls - lt), 0.0).sum(1)
    return kl * temperature**2


# --- public API -------------------------------------------------------------------------------


def check_student_vocab(student_vocab: int, teacher_vocab: int | None) -> None:
    """Refuse, in one line, a student with fewer logit columns than the teacher's vocabulary.

    A student vocabulary *larger* than the teacher's (a head padded to a multiple of 64 or
    128, e.g. Qwen2.5's 151,936 tokens in a 152,064-row head) is accepted: the extra ids are
    zero-probability under the teacher in every estimator. Forward KL and CE normalise the
    student over all its columns, so student mass on the extra ids is paid for (gradient
    s_v there, pushing it to 0), and a student whose extra logits are −inf gets exactly the
    loss and gradient of the unpadded student. Reverse KL would be +∞ for any mass on ids
    the teacher gives probability 0, so it compares the student restricted to the teacher's
    ids (renormalised there); the extra columns get no gradient.
    """
    if teacher_vocab is not None and student_vocab < teacher_vocab:
        raise ValueError(f"student vocabulary has {student_vocab} ids, the teacher's has {teacher_vocab}: "
                         "a student head may be padded beyond the teacher's ids, never smaller")


def _rows_of(student_logits: torch.Tensor, targets: SparseTargets, n: int) -> tuple[torch.Tensor, Rows]:
    """The logits tensor the chunked Functions read, and which of its rows (no copy of it)."""
    if student_logits.dim() == 3:
        b, t = targets.student_index(student_logits.shape[1])
        if student_logits.is_contiguous():  # a free 2-D view
            return student_logits.view(-1, student_logits.shape[-1]), b * student_logits.shape[1] + t
        return student_logits, (b, t)  # e.g. logits[:, :-1]: reshape would copy all of it
    if student_logits.dim() == 2:
        if student_logits.shape[0] != n:
            raise ValueError(f"student logits have {student_logits.shape[0]} rows, targets keep {n} tokens")
        return student_logits, None  # one row per kept token, in order
    raise ValueError(f"student logits must be [B, L, V] or [N, V], got {tuple(student_logits.shape)}")


def kd_loss(
    student_logits: torch.Tensor,
    targets: SparseTargets,
    *,
    kind: str = "forward_kl",
    estimator: str = "unbiased",
    temperature: float = 1.0,
    reduction: str = "mean",
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Sparse KD loss of student logits against compressed teacher targets.

    student_logits: [B, L, V] (the student's rows for the batch's sequences; the stored token
    at position t is compared with row t − 1), or [N, V] with one row per kept token in
    `targets.flat()` order. Any float dtype; the math runs in float32 per chunk.
    kind: "forward_kl" | "ce" | "reverse_kl"; estimator: "unbiased" | "unbiased_exact_mass" | "topk".
    Unbiased in value and gradient: every kind with estimator "unbiased" at temperature 1, and
    "ce" / "forward_kl" with "unbiased_exact_mass" at temperature 1 (a second unbiased form).
    At T ≠ 1 "unbiased" is a ratio estimator: forward kinds consistent but biased in value
    and gradient; reverse KL unbiased in gradient, biased in value by a constant. Every
    "topk" estimate is biased. For reverse KL "unbiased_exact_mass" is "unbiased". The module
    docstring names the estimator of each case.
    All kinds are scaled by T². reduction: "mean" over kept tokens, "sum", or "none" ([N]).
    """
    _check_args(kind, estimator, temperature, reduction)
    dev = student_logits.device
    targets = targets.to(dev)
    f = targets.flat()
    n = f["positions"].shape[0]
    _check_vocab(student_logits.shape[-1], targets, "student logits have")
    if kind == "reverse_kl" and targets.vocab_size is not None and student_logits.shape[-1] > targets.vocab_size:
        student_logits = student_logits[..., : targets.vocab_size]  # see `check_student_vocab`: a view, no copy
    vocab = student_logits.shape[-1]
    logits2d, rows = _rows_of(student_logits, targets, n)
    chunk = chunk_rows or default_chunk_rows(vocab)

    plan = _plan(f, kind, estimator, temperature)
    if plan.form == "topk_reverse":
        per_row = _topk_reverse(logits2d, rows, f, temperature)
    elif plan.form == "reverse":
        per_row = _ReverseKD.apply(logits2d, rows, *plan.tensors, float(temperature), chunk)
    else:
        per_row = _LinearTargetKD.apply(logits2d, rows, *plan.tensors, float(temperature), chunk)
    if plan.offset is not None:
        per_row = per_row + plan.offset
    return _reduce(per_row, n, reduction)


def _check_args(kind: str, estimator: str, temperature: float, reduction: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_vocab(vocab: int, targets: SparseTargets, what: str) -> None:
    """`check_student_vocab` with the name of what holds the student's columns."""
    if targets.vocab_size is not None and vocab < targets.vocab_size:
        raise ValueError(f"{what} {vocab} columns, the teacher's vocabulary has {targets.vocab_size}: "
                         "a student head may be padded beyond the teacher's ids, never smaller")


class _Plan(NamedTuple):
    """What one kind × estimator computes per row: `form` "linear" (tensors ids, α, M of
    `_LinearTargetKD`), "reverse" (ids, γ, ok of `_ReverseKD`) or "topk_reverse" (on the
    nucleus only, `_topk_reverse`); `offset` a float64 [N] constant of the student added to
    every row's value (−Ĥ(p_T)·T² for forward KL, log Ẑ_T·T² for reverse KL), or None."""

    form: str
    tensors: tuple
    offset: torch.Tensor | None


def _plan(f: dict, kind: str, estimator: str, temperature: float) -> _Plan:
    """The per-row teacher weights of one kind × estimator, from flat targets (`SparseTargets.flat`)."""
    if kind == "reverse_kl" and estimator == "topk":  # ("unbiased_exact_mass" = "unbiased" for reverse KL)
        return _Plan("topk_reverse", (), None)
    if kind == "reverse_kl":
        ids, gamma, ok, log_z = _reverse_weights(f, temperature)
        return _Plan("reverse", (ids, gamma, ok), log_z * temperature**2)
    ids, alpha, neg_ent = _forward_weights(f, estimator, temperature)
    # "unbiased": M = Σα, i.e. −Σ_k α_k log softmax(z)_k; otherwise M = 1 (Σα = 1 already at T ≠ 1 and topk)
    exact_mass = estimator != "unbiased" or temperature != 1.0
    n = ids.shape[0]
    mass = torch.ones(n, dtype=torch.float64, device=ids.device) if exact_mass else alpha.double().sum(1)
    return _Plan("linear", (ids, alpha, mass), neg_ent * temperature**2 if kind == "forward_kl" else None)


def _hard_label_plan(f: dict) -> _Plan:
    """Cross-entropy on the stored tokens: one id per row with weight 1, mass 1."""
    ids = f["token_ids"][:, None]
    alpha = torch.ones_like(ids, dtype=torch.float32)
    mass = torch.ones(ids.shape[0], dtype=torch.float64, device=ids.device)
    return _Plan("linear", (ids, alpha, mass), None)


def _reduce(per_row: torch.Tensor, n: int, reduction: str) -> torch.Tensor:
    """Per-row values come in float64 (no cancellation between CE and entropy); losses are float32."""
    if reduction == "none":
        return per_row.float()
    total = per_row.sum()
    return (total if reduction == "sum" else total / max(n, 1)).float()


def hard_label_loss(student_logits: torch.Tensor, targets: SparseTargets, *, reduction: str = "mean",
                    chunk_rows: int | None = None) -> torch.Tensor:
    """Cross-entropy on the stored tokens themselves (`targets.token_ids`), same rows and chunking."""
    targets = targets.to(student_logits.device)
    f = targets.flat()
    n = f["positions"].shape[0]
    vocab = student_logits.shape[-1]
    check_student_vocab(vocab, targets.vocab_size)
    logits2d, rows = _rows_of(student_logits, targets, n)
    plan = _hard_label_plan(f)
    per_row = _LinearTargetKD.apply(logits2d, rows, *plan.tensors, 1.0, chunk_rows or default_chunk_rows(vocab))
    return _reduce(per_row, n, reduction)


def dense_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, kind: str = "forward_kl",
                  temperature: float = 1.0, reduction: str = "mean", chunk_rows: int | None = None) -> torch.Tensor:
    """The exact loss against full teacher logits ([N, V_s] student, [N, V_t] teacher): the
    reference the sparse estimators approximate, and the "dense teacher" baseline. Chunked
    with checkpointing. A student padded beyond the teacher's vocabulary (V_s > V_t) is
    compared as `kd_loss` compares it (`check_student_vocab`): the teacher gives the extra
    ids probability 0; reverse KL uses the student's first V_t columns."""
    from torch.utils.checkpoint import checkpoint

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    n, vocab = student_logits.shape
    t_vocab = teacher_logits.shape[-1]
    check_student_vocab(vocab, t_vocab)
    if kind == "reverse_kl" and vocab > t_vocab:
        student_logits, vocab = student_logits[:, :t_vocab], t_vocab
    chunk = chunk_rows or default_chunk_rows(vocab)

    def rows_loss(z, tl):  # float32, or float64 when given float64
        ls = torch.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)) / temperature, -1)
        lt = torch.log_softmax(tl.to(torch.promote_types(tl.dtype, torch.float32)) / temperature, -1)
        if kind == "reverse_kl":
            return (ls.exp() * (ls - lt)).sum(-1)
        if lt.shape[-1] < ls.shape[-1]:  # padded student: the teacher's extra ids have p = 0
            ls = ls[:, : lt.shape[-1]]
        pt = lt.exp()
        ce = -(pt * ls).sum(-1)
        return ce if kind == "ce" else ce + torch.where(pt > 0, pt * lt, 0.0).sum(-1)  # 0·log 0 = 0

    parts = []
    for a in range(0, n, chunk):
        z, tl = student_logits[a : a + chunk], teacher_logits[a : a + chunk].detach()
        parts.append(checkpoint(rows_loss, z, tl, use_reentrant=False) if z.requires_grad else rows_loss(z, tl))
    per_row = (torch.cat(parts) if parts else student_logits.new_zeros(0, dtype=torch.float32)) * temperature**2
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.sum() / max(n, 1)
