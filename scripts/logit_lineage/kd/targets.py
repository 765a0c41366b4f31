"""Sparse KD targets: one example's stored distributions as flat numpy arrays, and a
batch of them padded into torch tensors (`SparseTargets`).

Per stored token (position t, the teacher's distribution FOR token t, computed from the
prefix ending at t−1; the student row to compare is t−1):
- the nucleus N: ids and exact log-probabilities log p_i = logit_i − logsumexp;
- the tail sample S: ids, log-probabilities and importance weights w_j = p_j / q_j, with
  q_j = 1 − exp(−exp(log p_j − κ)) the priority-sampling inclusion probability (κ the
  stored threshold; κ = −inf means the whole tail was kept and q_j = 1);
- the exact tail mass 1 − Σ_N p_i (exact up to the uint16 quantization of the logits,
  because the logsumexp is stored in float64).

Σ_S w_j f(j) estimates Σ_{i∉N} p_i f(i) without bias, for any f fixed before the sample.
Everything here is vectorised over all tokens of an example or a batch: no per-token
Python loops.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from logit_lineage.formats.tail import tail_weights  # the one home of the weight maths


def _segments(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.size), counts)


def example_targets(ex) -> dict[str, np.ndarray | int]:
    """Flat sparse targets of one decoded example (`logit_lineage.formats.logits.DecodedExample`).

    Per token: positions, token_ids (int64), logsumexp (float64), tail_mass (float64),
    nucleus_counts, tail_counts (int64). Flat, token after token: nucleus_ids,
    nucleus_logprobs, nucleus_probs, tail_ids, tail_logprobs, tail_weights (ids int64, the rest
    float64).
    """
    n_counts = np.asarray(ex.top_counts, dtype=np.int64)
    s_counts = np.asarray(ex.sampled_counts, dtype=np.int64)
    lse = np.asarray(ex.logsumexp, dtype=np.float64)
    n_lp = np.asarray(ex.top_logits, dtype=np.float64) - np.repeat(lse, n_counts)
    s_lp = np.asarray(ex.sampled_logits, dtype=np.float64) - np.repeat(lse, s_counts)
    kappa = np.repeat(np.asarray(ex.threshold, dtype=np.float64), s_counts)
    n_p = np.exp(n_lp)
    nucleus_mass = np.bincount(_segments(n_counts), weights=n_p, minlength=n_counts.size)
    out = {
        "index": int(ex.index),
        "positions": np.asarray(ex.positions, dtype=np.int64),
        "token_ids": np.asarray(ex.token_ids, dtype=np.int64),
        "logsumexp": lse,
        "tail_mass": np.clip(1.0 - nucleus_mass, 0.0, 1.0),
        "nucleus_counts": n_counts,
        "tail_counts": s_counts,
        "nucleus_ids": np.asarray(ex.top_ids, dtype=np.int64),
        "nucleus_logprobs": n_lp,
        "nucleus_probs": n_p,
        "tail_ids": np.asarray(ex.sampled_ids, dtype=np.int64),
        "tail_logprobs": s_lp,
        "tail_weights": tail_weights(s_lp, kappa),
    }
    grid = getattr(ex, "grid", None)
    if grid is not None:  # version 3: values are codes on a grid; kd's losses correct their rounding
        out["nucleus_step"] = np.full(n_counts.size, grid[0])
        out["tail_step"] = np.full(n_counts.size, grid[1])
    return out


@dataclass
class SparseTargets:
    """A batch of sparse teacher distributions, padded to [B, T] tokens (torch tensors).

    Row (b, j) is the teacher's distribution for token `token_ids[b, j]` at sequence position
    `positions[b, j]`; the student logits to compare are at position positions − 1. Padding
    (mask False, or k ≥ the row's count) has id 0, probability, weight and log-prob 0.
    """

    positions: torch.Tensor  # int64 [B, T]
    token_ids: torch.Tensor  # int64 [B, T]
    mask: torch.Tensor  # bool [B, T]: a stored token
    logsumexp: torch.Tensor  # float64 [B, T]: the teacher's log Σ exp(logits)
    tail_mass: torch.Tensor  # float64 [B, T]: 1 − Σ_N p, exact
    nucleus_counts: torch.Tensor  # int64 [B, T]
    nucleus_ids: torch.Tensor  # int64 [B, T, Kn]
    nucleus_probs: torch.Tensor  # float32 [B, T, Kn]
    tail_counts: torch.Tensor  # int64 [B, T]
    tail_ids: torch.Tensor  # int64 [B, T, Ks]
    tail_weights: torch.Tensor  # float32 [B, T, Ks]: p / q
    tail_logprobs: torch.Tensor  # float32 [B, T, Ks]
    vocab_size: int | None = None
    # float64 [B, T]: log-probability grid step of the token's stored values (format version 3's
    # codes; 0 for exact values); None when no token's values are on a grid. kd_loss reads it
    # to correct the rounding's bias in terms that are not linear in p̂ and ŵ (docs/FORMAT.md).
    nucleus_step: torch.Tensor | None = None
    tail_step: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())

    @property
    def nucleus_mask(self) -> torch.Tensor:
        k = torch.arange(self.nucleus_ids.shape[-1], device=self.nucleus_ids.device)
        return k < self.nucleus_counts[..., None]

    @property
    def tail_mask(self) -> torch.Tensor:
        k = torch.arange(self.tail_ids.shape[-1], device=self.tail_ids.device)
        return k < self.tail_counts[..., None]

    def to(self, device, non_blocking: bool = False) -> SparseTargets:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=non_blocking)
        return SparseTargets(**moved)

    def pin_memory(self) -> SparseTargets:
        """Called by DataLoader(pin_memory=True) on custom batch types."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.pin_memory()
        return SparseTargets(**moved)

    @property
    def nucleus_logprobs(self) -> torch.Tensor:
        """log p on the nucleus (0 on padding), float32 [B, T, Kn]."""
        return torch.where(self.nucleus_mask, torch.log(self.nucleus_probs), 0.0)

    def flat(self) -> dict[str, torch.Tensor]:
        """The kept tokens in (b, j) order: per-token [N] and per-entry [N, K] tensors
        (every field but the mask, plus nucleus_logprobs)."""
        m = self.mask
        out = {f.name: getattr(self, f.name)[m] for f in fields(self)
               if isinstance(getattr(self, f.name), torch.Tensor) and f.name != "mask"}
        k = torch.arange(out["nucleus_ids"].shape[-1], device=m.device)
        ok = k < out["nucleus_counts"][:, None]
        out["nucleus_logprobs"] = torch.where(ok, torch.log(out["nucleus_probs"]), 0.0)
        return out

    def student_index(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, position − 1) of every kept token in (b, j) order: where the student's logits
        that predict the stored token sit in [B, seq_len, V] logits."""
        b = torch.arange(self.mask.shape[0], device=self.mask.device)[:, None].expand_as(self.mask)
        pos = self.positions[self.mask]
        if pos.numel():
            lo, hi = int(pos.min()), int(pos.max())
            if lo < 1 or hi > seq_len:
                raise ValueError(f"stored positions span [{lo}, {hi}]: student logits of length {seq_len} "
                                 f"cover positions 1…{seq_len} (row t−1 predicts token t)")
        return b[self.mask], pos - 1

    def student_rows(self, seq_len: int) -> torch.Tensor:
        """Row indices into student logits viewed as [B·seq_len, V], one per kept token in
        (b, j) order: b·seq_len + position − 1 (the row that predicts the stored token)."""
        b, t = self.student_index(seq_len)
        return b * seq_len + t


def collate_targets(examples: list[dict], vocab_size: int | None = None) -> SparseTargets:
    """Pad the flat targets of several examples (`example_targets`) into one `SparseTargets`.

    Flat arrays are in (example, token, entry) order, which is the C order of the padded
    [B, T, K] layout restricted to its valid entries: every field is one boolean-mask fill.
    """
    bsz = len(examples)
    n_tok = np.fromiter((len(e["positions"]) for e in examples), dtype=np.int64, count=bsz)
    tmax = int(n_tok.max()) if bsz else 0
    tok_ok = np.arange(tmax)[None, :] < n_tok[:, None]  # [B, T]

    def cat(key):
        return np.concatenate([e[key] for e in examples]) if bsz else np.zeros(0)

    def per_token(key, dtype):
        out = np.zeros((bsz, tmax), dtype=dtype)
        out[tok_ok] = cat(key)
        return out

    n_counts, s_counts = per_token("nucleus_counts", np.int64), per_token("tail_counts", np.int64)
    kn, ks = int(n_counts.max(initial=0)), int(s_counts.max(initial=0))
    n_ok = np.arange(kn) < n_counts[..., None]  # [B, T, Kn]
    s_ok = np.arange(ks) < s_counts[..., None]

    def padded(key, ok, dtype):
        out = np.zeros(ok.shape, dtype=dtype)
        out[ok] = cat(key)
        return torch.from_numpy(out)

    t = torch.from_numpy
    return SparseTargets(
        positions=t(per_token("positions", np.int64)),
        token_ids=t(per_token("token_ids", np.int64)),
        mask=t(tok_ok),
        logsumexp=t(per_token("logsumexp", np.float64)),
        tail_mass=t(per_token("tail_mass", np.float64)),
        nucleus_counts=t(n_counts),
        nucleus_ids=padded("nucleus_ids", n_ok, np.int64),
        nucleus_probs=padded("nucleus_probs", n_ok, np.float32),
        tail_counts=t(s_counts),
        tail_ids=padded("tail_ids", s_ok, np.int64),
        tail_weights=padded("tail_weights", s_ok, np.float32),
        tail_logprobs=padded("tail_logprobs", s_ok, np.float32),
        vocab_size=vocab_size,
        **_steps(examples, tok_ok),
    )


def _steps(examples: list[dict], tok_ok: np.ndarray) -> dict:
    """nucleus_step / tail_step [B, T] when any example's values are on a grid (0 elsewhere)."""
    if not any("nucleus_step" in e for e in examples):
        return {}
    out = {}
    for key in ("nucleus_step", "tail_step"):
        vals = np.zeros(tok_ok.shape, dtype=np.float64)
        vals[tok_ok] = np.concatenate([e[key] if key in e else np.zeros(len(e["positions"])) for e in examples])
        out[key] = torch.from_numpy(vals)
    return out


def targets_from_compressed(c, positions: torch.Tensor | None = None, token_ids: torch.Tensor | None = None,
                            vocab_size: int | None = None) -> SparseTargets:
    """`SparseTargets` [1, m] straight from `teacher.compress.compress_rows` output (no file, no
    quantization): for tests, benchmarks and on-the-fly distillation."""
    lse = c.logsumexp.double().cpu().numpy()
    tc, sc = c.top_counts.cpu().numpy(), c.sampled_counts.cpu().numpy()
    n_ok = np.arange(c.top_ids.shape[1]) < tc[:, None]
    s_ok = np.arange(c.sampled_ids.shape[1]) < sc[:, None]
    m = lse.size
    ex = {
        "index": 0,
        "positions": (positions.cpu().numpy() if positions is not None else np.arange(1, m + 1)).astype(np.int64),
        "token_ids": (token_ids.cpu().numpy() if token_ids is not None else np.zeros(m)).astype(np.int64),
        "logsumexp": lse,
        "nucleus_counts": tc.astype(np.int64),
        "tail_counts": sc.astype(np.int64),
        "nucleus_ids": c.top_ids.cpu().numpy()[n_ok],
        "nucleus_logprobs": c.top_logits.double().cpu().numpy()[n_ok] - np.repeat(lse, tc),
        "tail_ids": c.sampled_ids.cpu().numpy()[s_ok],
    }
    ex["tail_logprobs"] = c.sampled_logits.double().cpu().numpy()[s_ok] - np.repeat(lse, sc)
    ex["tail_weights"] = tail_weights(ex["tail_logprobs"], np.repeat(c.threshold.double().cpu().numpy(), sc))
    ex["nucleus_probs"] = np.exp(ex["nucleus_logprobs"])
    mass = np.bincount(_segments(ex["nucleus_counts"]), weights=ex["nucleus_probs"], minlength=m)
    ex["tail_mass"] = np.clip(1.0 - mass, 0.0, 1.0)
    return collate_targets([ex], vocab_size=vocab_size)
