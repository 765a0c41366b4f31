"""BASELINE for the benchmarks: the original compression method, reimplemented.

This is NOT the project's method. It reproduces, operation for operation, what
the users' original compression code does in `gpu_process_batch` (not in this
repository; the file's and functions' names keep the old word "seed" for it), so that the
benchmarks can put the project's `teacher.compress.compress_rows` side by side
with it:

1. a float64 copy of the [rows, vocab] logits and their logsumexp;
2. probabilities for the whole vocabulary (softmax, float64);
3. a full-vocabulary descending sort, a cumulative sum, and the nucleus mask
   `cumsum <= top_p` (top token always kept), capped at `cap` elements;
4. a [rows, vocab] nucleus mask scattered back to vocabulary order;
5. Gumbel-max in log space, float64, over the whole vocabulary with the nucleus
   set to -inf, from a [rows, vocab] float64 draw of uniforms; top-k of the keys.

`inclusive=True` exists only for the agreement check (it changes no cost): the
format's nucleus rule (docs/FORMAT.md: the token that crosses top_p is included; the
original `cumsum <= top_p` leaves it out). Gumbel noise is G = -log(-log(1 - u)) (the
original writes -log(-log(u)); 1 - u is uniform too, and the cost is the same).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SeedCompressed:
    logsumexp: torch.Tensor  # float64 [m]
    top_counts: torch.Tensor  # int64 [m]
    top_ids: torch.Tensor  # int64 [m, cap]; first top_counts[r] valid
    top_logits: torch.Tensor  # float32 [m, cap]
    sampled_ids: torch.Tensor  # int64 [m, k]
    sampled_logits: torch.Tensor  # float32 [m, k]
    threshold: torch.Tensor  # float64 [m]: the (k+1)-th key


def seed_uniforms(rows: int, vocab: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """The original method draws its noise for the whole [rows, vocab] block at once, float64."""
    return torch.rand((rows, vocab), generator=generator, dtype=torch.float64, device=device)


def seed_compress(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    *,
    top_p: float,
    cap: int,
    k: int,
    inclusive: bool = False,
) -> SeedCompressed:
    """Compress rows of logits [m, V] the original way (see the module docstring)."""
    m, vocab = logits.shape
    dev = logits.device
    logits_f32 = logits.float()
    logits64 = logits_f32.double()  # the float64 copy of the whole block
    lse = torch.logsumexp(logits64, dim=-1)
    probs = torch.exp(logits64 - lse[:, None])

    sorted_probs, sorted_idx = torch.sort(probs, dim=-1, descending=True)
    cumsum = torch.cumsum(sorted_probs, dim=-1)
    if inclusive:  # the format's rule: keep the token whose cumulative mass crosses top_p
        nucleus_sorted = (cumsum - sorted_probs) < top_p
    else:  # the original rule: cumsum <= top_p
        nucleus_sorted = cumsum <= top_p
    nucleus_sorted[:, 0] = True
    nucleus_sorted &= torch.arange(vocab, device=dev)[None, :] < cap
    top_counts = nucleus_sorted.sum(-1)
    cap = min(cap, vocab)
    top_ids = sorted_idx[:, :cap]
    top_logits = logits_f32.gather(1, top_ids)

    nucleus_vocab = torch.zeros((m, vocab), dtype=torch.bool, device=dev)
    nucleus_vocab.scatter_(1, sorted_idx[:, :cap], nucleus_sorted[:, :cap])
    log_probs = logits64 - lse[:, None]
    gumbel = -torch.log(-torch.log1p(-uniforms))
    keys = (log_probs + gumbel).masked_fill_(nucleus_vocab, float("-inf"))
    take = min(k + 1, vocab)
    best_keys, best_ids = torch.topk(keys, take, dim=-1)
    if take == k + 1:
        threshold = best_keys[:, k]
    else:
        threshold = torch.full((m,), float("-inf"), dtype=torch.float64, device=dev)
    sampled_ids = best_ids[:, :k]
    return SeedCompressed(
        logsumexp=lse,
        top_counts=top_counts,
        top_ids=top_ids,
        top_logits=top_logits,
        sampled_ids=sampled_ids,
        sampled_logits=logits_f32.gather(1, sampled_ids),
        threshold=threshold,
    )


def seed_compress_block(logits: torch.Tensor, generator: torch.Generator, *, top_p: float, cap: int,
                        k: int) -> SeedCompressed:
    """What one call of the original method costs: draw the block's uniforms, then compress."""
    uniforms = seed_uniforms(logits.shape[0], logits.shape[1], generator, logits.device)
    return seed_compress(logits, uniforms, top_p=top_p, cap=cap, k=k)
