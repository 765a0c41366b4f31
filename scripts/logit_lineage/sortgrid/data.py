"""The sorting task: K numbers from [0, N), the separator N, then the same numbers sorted.

    sequence  a_1 .. a_K  N  s_1 .. s_K            (length 2K + 1)
    inputs    sequence[:-1]                        (length 2K)
    targets   s_1 .. s_K, predicted at input positions K .. 2K-1 (the separator and
              s_1 .. s_{K-1}); the loss covers only these positions.
"""
from __future__ import annotations

import math

import torch

from logit_lineage.common.errors import LineageError

LENGTH_MODES = ("mix", "curriculum")


def sample_sequences(
    batch_size: int,
    k: int,
    vocab_n: int,
    *,
    distinct: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """[batch_size, 2k+1] int64 sequences (distinct numbers unless `distinct` is False)."""
    if distinct and k > vocab_n:
        raise LineageError(f"cannot draw {k} distinct numbers from [0, {vocab_n})")
    if distinct:
        # The first k indices of a random permutation are k distinct uniform numbers.
        numbers = torch.rand(batch_size, vocab_n, generator=generator, device=device).argsort(dim=1)[:, :k]
    else:
        numbers = torch.randint(0, vocab_n, (batch_size, k), generator=generator, device=device)
    sep = torch.full((batch_size, 1), vocab_n, dtype=numbers.dtype, device=numbers.device)
    return torch.cat([numbers, sep, numbers.sort(dim=1).values], dim=1)


def inputs_and_targets(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(inputs [B, 2K], targets [B, K], K): predictions are read from inputs' positions K..2K-1."""
    length = seq.shape[1]
    if length % 2 != 1:
        raise LineageError(f"a sort sequence has odd length 2K+1, got {length}")
    k = length // 2
    return seq[:, :-1], seq[:, k + 1:], k


class LengthSampler:
    """K for each training batch (all sequences of a batch share K, so no padding).

    mix:        K uniform in [min_k, max_k] for every batch.
    curriculum: K uniform in [min_k, upper(t)]; upper grows linearly from min_k to max_k
                over the first half of training, then stays at max_k.
    A fixed single-K run is `mix` with min_k == max_k.
    """

    def __init__(self, mode: str, min_k: int, max_k: int, max_iters: int):
        if mode not in LENGTH_MODES:
            raise LineageError(f"length mode {mode!r} is not one of {', '.join(LENGTH_MODES)}")
        if not 1 <= min_k <= max_k:
            raise LineageError(f"need 1 <= min_k <= max_k, got {min_k}..{max_k}")
        self.mode, self.min_k, self.max_k, self.max_iters = mode, min_k, max_k, max_iters

    def upper(self, it: int) -> int:
        if self.mode == "mix":
            return self.max_k
        half = max(1, self.max_iters // 2)
        span = self.max_k - self.min_k
        return min(self.max_k, self.min_k + math.floor(span * it / half))

    def sample(self, it: int, generator: torch.Generator) -> int:
        hi = self.upper(it)
        return int(torch.randint(self.min_k, hi + 1, (1,), generator=generator).item())
