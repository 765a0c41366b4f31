"""Compress next-token distributions: nucleus + Gumbel-top-k tail sample.

For each row of logits (one kept position):
- logsumexp with float64 accumulation;
- the nucleus: the smallest set of top tokens whose mass reaches `top_p`
  (the crossing token included), at most `cap` tokens;
- `k` tail tokens drawn without replacement in proportion to their true
  probability by Gumbel-top-k in log space (float64), plus the threshold κ,
  the (k+1)-th largest perturbed key, from which inclusion probabilities
  q_i = 1 − exp(−exp(log p_i − κ)) give unbiased tail weights p_i / q_i.

Nothing sorts the vocabulary. `torch.topk` finds the nucleus and a few
candidates; the Gumbel keys are computed exactly only where they can matter:
a token outside the candidates can beat the candidates' (k+1)-th key κ_C only
if its uniform u < p·e^(−κ_C) (since −log(1−u) ≥ u), a cheap float32 test that
leaves a handful of tokens per row. The result equals a full-vocabulary
Gumbel-top-k with the same uniforms, exactly.

Uniforms come from a generator seeded per (seed, example, block of 64 kept
tokens), so the sample depends on the example, never on the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NOISE_BLOCK = 64  # kept tokens of one example that share one generator draw
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def block_seed(seed: int, example_index: int, block: int) -> int:
    """A 63-bit generator seed for one block of one example."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (example_index & _MASK64))
    h = _splitmix64(h ^ (block & _MASK64))
    return h & ((1 << 63) - 1)


def fill_uniforms(out: torch.Tensor, seed: int, example_index: int, block: int, generator: torch.Generator) -> None:
    """Fill `out` [rows, V] float64 with the block's uniforms in [0, 1)."""
    generator.manual_seed(block_seed(seed, example_index, block))
    torch.rand(out.shape, generator=generator, dtype=torch.float64, device=out.device, out=out)


@dataclass
class Compressed:
    """Per-row results of `compress_rows` (tensors on the compute device)."""

    logsumexp: torch.Tensor  # float64 [m]
    top_counts: torch.Tensor  # int64 [m]
    top_ids: torch.Tensor  # int64 [m, cap]; first top_counts[r] valid
    top_logits: torch.Tensor  # float32 [m, cap]
    sampled_counts: torch.Tensor  # int64 [m]
    sampled_ids: torch.Tensor  # int64 [m, k]; first sampled_counts[r] valid
    sampled_logits: torch.Tensor  # float32 [m, k]
    threshold: torch.Tensor  # float64 [m]; -inf when the whole finite tail was taken


def _gumbel_keys(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """log p + Gumbel, with Gumbel = −log(E), E = −log(1 − u) ~ Exp(1); float64."""
    exp1 = torch.log1p(-uniforms).neg_().clamp_(min=1e-300)
    return logprobs - torch.log(exp1)


class Workspace:
    """Reusable [rows, V] buffers: fresh multi-MB allocations cost more than the math."""

    def __init__(self):
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, rows: int, vocab: int, dtype: torch.dtype, device) -> torch.Tensor:
        key = (name, dtype, str(device), vocab)
        buf = self._bufs.get(key)
        if buf is None or buf.shape[0] < rows:
            buf = torch.empty((rows, vocab), dtype=dtype, device=device)
            self._bufs[key] = buf
        return buf[:rows]


def compress_rows(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    *,
    top_p: float,
    cap: int,
    k: int,
    workspace: Workspace | None = None,
) -> Compressed:
    """Compress rows of float32 logits [m, V] given their uniforms [m, V] (float64)."""
    ws = workspace or Workspace()
    m, vocab = logits.shape
    dev = logits.device
    logits = logits.float()
    cap = min(cap, vocab)
    n_cand = min(vocab, cap + max(2 * (k + 1), 16))
    cand_vals, cand_ids = torch.topk(logits, n_cand, dim=-1)  # sorted, descending
    rowmax = cand_vals[:, :1]
    scaled = torch.sub(logits, rowmax, out=ws.get("scaled", m, vocab, torch.float32, dev)).exp_()
    lse = rowmax.squeeze(1).double() + torch.log(scaled.sum(-1, dtype=torch.float64))
    cand_lp = cand_vals.double() - lse[:, None]

    # Nucleus: first rank whose cumulative mass reaches top_p, inclusive, capped.
    reach = torch.cumsum(cand_lp[:, :cap].exp(), dim=-1) >= top_p
    top_counts = torch.where(reach.any(-1), reach.to(torch.int8).argmax(-1) + 1, cap).long()
    ranks = torch.arange(n_cand, device=dev)
    in_nucleus = ranks[None, :] < top_counts[:, None]

    # Exact keys for the candidates (the tail part of the top list).
    cand_keys = _gumbel_keys(cand_lp, uniforms.gather(1, cand_ids)).masked_fill_(in_nucleus, float("-inf"))
    keys, ids = cand_keys, cand_ids
    if n_cand < vocab:
        kappa_c = torch.topk(cand_keys, k + 1, dim=-1).values[:, k]
        # A token outside the candidates beats kappa_c only if u < p·e^(−kappa_c)
        # = exp(logit − rowmax) · exp(rowmax − lse − kappa_c); test it in float32 with margin.
        log_scale = rowmax.squeeze(1).double() - lse - kappa_c
        exact_rows = log_scale > 80.0  # float32 would overflow: such rows get every key
        scale = torch.where(exact_rows, torch.zeros_like(log_scale), log_scale).exp().float() * 1.0001
        maybe = torch.lt(uniforms, scaled.mul_(scale[:, None]).add_(1e-30), out=ws.get("maybe", m, vocab, torch.bool, dev))
        maybe[exact_rows] = True
        maybe.scatter_(1, cand_ids, False)
        rows, cols = maybe.nonzero(as_tuple=True)
        if rows.numel():
            extra_keys = _gumbel_keys(logits[rows, cols].double() - lse[rows], uniforms[rows, cols])
            per_row = torch.bincount(rows, minlength=m)
            width = int(per_row.max())
            slot = torch.arange(rows.numel(), device=dev) - (torch.cumsum(per_row, 0) - per_row)[rows]
            pad_keys = torch.full((m, width), float("-inf"), dtype=torch.float64, device=dev)
            pad_ids = torch.zeros((m, width), dtype=torch.int64, device=dev)
            pad_keys[rows, slot] = extra_keys
            pad_ids[rows, slot] = cols
            keys = torch.cat([cand_keys, pad_keys], dim=1)
            ids = torch.cat([cand_ids, pad_ids], dim=1)

    take = min(k + 1, keys.shape[1])
    best_keys, best_pos = torch.topk(keys, take, dim=-1)
    best_ids = ids.gather(1, best_pos)
    finite = torch.isfinite(best_keys)
    if take == k + 1:
        threshold = best_keys[:, k].clone()
        sampled_counts = finite[:, :k].sum(-1)
    else:  # fewer tail tokens than k + 1: all of them are taken
        threshold = torch.full((m,), float("-inf"), dtype=torch.float64, device=dev)
        sampled_counts = finite.sum(-1)
    sampled_ids = best_ids[:, :k]
    sampled_logits = logits.gather(1, sampled_ids)
    return Compressed(
        logsumexp=lse,
        top_counts=top_counts,
        top_ids=cand_ids[:, :cap],
        top_logits=cand_vals[:, :cap],
        sampled_counts=sampled_counts.long(),
        sampled_ids=sampled_ids,
        sampled_logits=sampled_logits,
        threshold=threshold,
    )


def inclusion_probabilities(logprobs, threshold):
    """q_i = 1 − exp(−exp(log p_i − κ)) for tail samples (numpy or torch, float64)."""
    import numpy as np

    lp = np.asarray(logprobs, dtype=np.float64)
    kappa = np.asarray(threshold, dtype=np.float64)
    with np.errstate(over="ignore"):
        return -np.expm1(-np.exp(lp - kappa))


def reference_compress_row(logits_row: torch.Tensor, uniforms_row: torch.Tensor, *, top_p: float, cap: int, k: int):
    """Full-vocabulary reference (sort + Gumbel over all): for tests only."""
    lp = torch.log_softmax(logits_row.double(), -1)
    order = torch.argsort(lp, descending=True, stable=True)
    cum = torch.cumsum(lp[order].exp(), 0)
    reach = (cum >= top_p).nonzero()
    count = min(cap, int(reach[0]) + 1 if reach.numel() else cap)
    nucleus = order[:count]
    keys = _gumbel_keys(lp, uniforms_row)
    keys[nucleus] = float("-inf")
    best = torch.topk(keys, min(k + 1, keys.numel())).indices
    return nucleus, best[:k], keys[best]
