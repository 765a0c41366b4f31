"""Length-sorted shards and token-budget batches over them."""
from __future__ import annotations

import numpy as np


def balanced_cuts(lengths: np.ndarray, n_shards: int) -> list[np.ndarray]:
    """Cut rows already sorted by length into n contiguous parts of ~equal token sums."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(n_shards)]
    cum = np.cumsum(lengths)
    targets = cum[-1] * np.arange(1, n_shards) / n_shards
    bounds = np.searchsorted(cum, targets, side="left") + 1
    bounds = np.clip(bounds, 0, lengths.size)
    edges = np.concatenate([[0], bounds, [lengths.size]])
    edges = np.maximum.accumulate(edges)
    return [np.arange(edges[i], edges[i + 1]) for i in range(n_shards)]


def plan_batches(lengths: np.ndarray, token_budget: int, max_batch_size: int) -> list[np.ndarray]:
    """Greedy batches of consecutive rows with batch_size × longest ≤ token_budget.

    Rows come sorted by length, so padding is small; a row longer than the budget
    gets a batch of its own.
    """
    batches, start, longest = [], 0, 0
    for i, n in enumerate(np.asarray(lengths, dtype=np.int64)):
        size = i - start + 1
        new_longest = max(longest, int(n))
        if size > 1 and (size * new_longest > token_budget or size > max_batch_size):
            batches.append(np.arange(start, i))
            start, new_longest = i, int(n)
        longest = new_longest
    if start < len(lengths):
        batches.append(np.arange(start, len(lengths)))
    return batches


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Fraction of computed positions that are padding."""
    lengths = np.asarray(lengths, dtype=np.int64)
    computed = sum(len(b) * int(lengths[b].max()) for b in batches if len(b))
    return 1.0 - float(lengths.sum()) / computed if computed else 0.0
