"""The compression kernel: nucleus against a full-vocabulary sort, the tail sample against
full-vocabulary Gumbel-top-k (same law), and its determinism per (seed, example, block)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.teacher.compress import (
    BlockNoise,
    RandomNoise,
    block_seed,
    compress_rows,
    nucleus_mask,
    reference_compress_row,
)


@settings(max_examples=40, deadline=None)
@given(
    vocab=st.integers(2, 4000),
    scale=st.floats(0.3, 8.0),
    peak=st.floats(0.0, 40.0),
    top_p=st.floats(0.5, 0.999),
    cap=st.integers(1, 120),
    k=st.integers(0, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_nucleus_matches_full_sort_and_tail_sample_is_well_formed(vocab, scale, peak, top_p, cap, k, seed):
    g = torch.Generator().manual_seed(seed)
    m = 6
    logits = torch.randn((m, vocab), generator=g) * scale
    logits[:, torch.randint(vocab, (3,), generator=g)] += peak
    c = compress_rows(logits, RandomNoise(m, g), top_p=top_p, cap=cap, k=k)
    u = torch.rand((m, vocab), generator=g, dtype=torch.float64)
    for r in range(m):
        nucleus, _, _ = reference_compress_row(logits[r], u[r], top_p=top_p, cap=cap, k=k)
        n = int(c.top_counts[r])
        assert set(c.top_ids[r, :n].tolist()) == set(nucleus.tolist())
        assert torch.equal(c.top_logits[r, :n], logits[r, c.top_ids[r, :n]])
        exact_lse = torch.logsumexp(logits[r].double(), 0)
        assert abs(float(c.logsumexp[r] - exact_lse)) < 1e-9
        mass = torch.exp(c.top_logits[r, :n].double() - c.logsumexp[r]).sum()
        assert n == min(cap, vocab) or mass >= top_p - 1e-9
        # Tail: distinct tokens outside the nucleus; all of them when the tail is small.
        s = int(c.sampled_counts[r])
        sampled = c.sampled_ids[r, :s].tolist()
        tail = vocab - n
        assert len(set(sampled)) == s and not set(sampled) & set(nucleus.tolist())
        assert s == min(k, tail)
        assert torch.equal(c.sampled_logits[r, :s], logits[r, sampled])
        assert math.isfinite(float(c.threshold[r])) == (tail >= k + 1)


def _tail_law(z: torch.Tensor, top_p: float, cap: int, k: int, n: int, ours: bool):
    """Inclusion counts, first-pick counts and thresholds over n independent draws."""
    vocab = z.numel()
    g = torch.Generator().manual_seed(11 if ours else 12)
    inc, firsts, kappa = np.zeros(vocab), np.zeros(vocab), np.empty(n)
    if ours:
        c = compress_rows(z.expand(n, -1).contiguous(), RandomNoise(n, g), top_p=top_p, cap=cap, k=k)
        for r in range(n):
            s = c.sampled_ids[r, : int(c.sampled_counts[r])].numpy()
            inc[s] += 1
            firsts[s[:1]] += 1
        kappa[:] = c.threshold.numpy()
        return inc / n, firsts / n, kappa
    u = torch.rand((n, vocab), generator=g, dtype=torch.float64)
    for r in range(n):
        _, sampled, keys = reference_compress_row(z, u[r], top_p=top_p, cap=cap, k=k)
        s = sampled[torch.isfinite(keys[: len(sampled)])].numpy()
        inc[s] += 1
        firsts[s[:1]] += 1
        kappa[r] = float(keys[k]) if len(keys) > k else -np.inf
    return inc / n, firsts / n, kappa


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


TAILS = {
    "gaussian": (torch.randn(40, generator=torch.Generator().manual_seed(3)) * 2, 0.9, 10, 5),
    # one tail token dominates, the rest lie 1e-10 below: extra rounds and the float64 floor
    "steep": (torch.tensor([10.0, 8.0, 3.0] + [-20.0] * 30 + [-5.0]), 0.9, 10, 5),
    "two-level": (torch.tensor([10.0, 8.0, 3.0] + [-8.0 - 40 * (i % 2) for i in range(30)] + [-5.0]), 0.9, 10, 5),
    # tail of 10 with 8 of them ~e^-63 below the top: every positive token matters
    "nearly-exhausted": (torch.tensor([10.0, 9.0, 3.0, -60.0] + [-61.0] * 7), 0.99, 1, 8),
}


@pytest.mark.parametrize("case", sorted(TAILS))
def test_tail_sample_has_the_law_of_full_gumbel_top_k(case):
    """Same inclusion and first-pick frequencies, same law of κ (two-sample KS), n draws each."""
    z, top_p, cap, k = TAILS[case]
    n = 12_000
    inc_a, first_a, kappa_a = _tail_law(z, top_p, cap, k, n, ours=True)
    inc_b, first_b, kappa_b = _tail_law(z, top_p, cap, k, n, ours=False)
    sd = np.sqrt(np.maximum(inc_b * (1 - inc_b), 1e-4) * 2 / n)
    assert np.all(np.abs(inc_a - inc_b) <= 5 * sd), (inc_a, inc_b)
    sd = np.sqrt(np.maximum(first_b * (1 - first_b), 1e-4) * 2 / n)
    assert np.all(np.abs(first_a - first_b) <= 5 * sd), (first_a, first_b)
    assert np.isfinite(kappa_a).mean() == np.isfinite(kappa_b).mean()
    assert _ks(kappa_a, kappa_b) < 1.95 * math.sqrt(2 / n)  # α = 0.001


def test_the_law_test_can_fail():
    """The same check on a sampler that ignores the probabilities must reject it."""
    z, top_p, cap, k = TAILS["gaussian"]
    n = 12_000
    inc_b, _, _ = _tail_law(z, top_p, cap, k, n, ours=False)
    flat = torch.where(z >= torch.sort(z, descending=True).values[cap - 1], z, torch.zeros_like(z))
    inc_a, _, _ = _tail_law(flat, top_p, cap, k, n, ours=True)
    sd = np.sqrt(np.maximum(inc_b * (1 - inc_b), 1e-4) * 2 / n)
    assert not np.all(np.abs(inc_a - inc_b) <= 5 * sd)


def test_crossing_token_is_included():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    noise = RandomNoise(1, torch.Generator().manual_seed(0))
    c = compress_rows(logits, noise, top_p=0.5, cap=10, k=2)
    assert int(c.top_counts[0]) == 1  # the top token alone reaches 0.5
    c = compress_rows(logits, noise, top_p=0.79, cap=10, k=2)
    assert int(c.top_counts[0]) == 2  # 0.8 ≥ 0.79: the token that crosses p is in, no more
    c = compress_rows(logits, noise, top_p=0.81, cap=10, k=2)
    assert int(c.top_counts[0]) == 3
    c = compress_rows(logits, noise, top_p=0.81, cap=2, k=2)
    assert int(c.top_counts[0]) == 2  # capped


def test_wide_nuclei_take_the_second_top_k():
    """A flat row needs more than the first cheap top-k: capped at 100, exactly the top 100."""
    logits = torch.linspace(0, 1, 5000)[None, :].repeat(3, 1)
    c = compress_rows(logits, RandomNoise(3, torch.Generator().manual_seed(3)), top_p=0.98, cap=100, k=4)
    assert c.top_counts.tolist() == [100] * 3
    assert set(c.top_ids[0].tolist()) == set(range(4900, 5000))


def test_lse_is_float64_accurate_on_peaked_rows():
    logits = torch.full((1, 50_000), -30.0)
    logits[0, 0] = 10.0
    c = compress_rows(logits, RandomNoise(1, torch.Generator().manual_seed(1)), top_p=0.98, cap=100, k=4)
    exact = 10.0 + np.log1p(49_999 * np.exp(-40.0))
    assert c.logsumexp.dtype == torch.float64
    assert float(c.logsumexp[0]) > 10.0  # float32 would round the tail mass away
    assert abs(float(c.logsumexp[0]) - exact) < 1e-12
    # the tail lies e^-40 below the nucleus: still sampled, with a threshold on its scale
    assert int(c.sampled_counts[0]) == 4 and 0 not in c.sampled_ids[0].tolist()
    # κ = log p + the 5th largest of 49,999 standard Gumbels: mean log n + γ − H_4, sd ≈ 0.47
    log_p = -30.0 - exact
    mean = log_p + np.log(49_999) + np.euler_gamma - (1 + 1 / 2 + 1 / 3 + 1 / 4)
    sd = np.sqrt(np.pi**2 / 6 - (1 + 1 / 4 + 1 / 9 + 1 / 16))
    assert abs(float(c.threshold[0]) - mean) < 6 * sd


def test_tail_far_below_float64_range_of_the_row_max():
    """Tail tokens 800 nats under the top: weights relative to the tail's own top."""
    logits = torch.full((2, 300), -800.0)
    logits[:, 0] = 0.0
    logits[1, 5] = -790.0
    c = compress_rows(logits, RandomNoise(2, torch.Generator().manual_seed(2)), top_p=0.9, cap=10, k=3)
    assert c.top_counts.tolist() == [1, 1]
    assert c.sampled_counts.tolist() == [3, 3]
    assert torch.isfinite(c.threshold).all() and (c.threshold < -780).all()
    assert 5 in c.sampled_ids[1].tolist()  # 10 nats above the rest: nearly always drawn


def test_block_noise_depends_on_example_block_and_round_only():
    g = torch.Generator()
    a = BlockNoise(5, [(42, 0, 3), (43, 0, 2)], g).draws(0, 17)
    torch.rand(100, generator=g)  # unrelated draws in between change nothing
    b = BlockNoise(5, [(43, 0, 2), (42, 0, 3)], g).draws(0, 17)
    assert torch.equal(a[:3], b[2:]) and torch.equal(a[3:], b[:2])
    assert not torch.equal(a[:2], a[3:])
    rows = torch.tensor([4])
    assert torch.equal(BlockNoise(5, [(42, 0, 3), (43, 0, 2)], g).draws(2, 9, rows),
                       BlockNoise(5, [(43, 0, 2)], g).draws(2, 9, torch.tensor([1])))
    assert len({block_seed(5, 42, 0), block_seed(5, 42, 1), block_seed(5, 42, 0, 1)}) == 3


def test_rows_compress_the_same_in_any_chunking():
    """Per-row results depend on the row and its block noise, not on the other rows."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((10, 700), generator=g) * 4
    logits[:5, 3] += 12.0  # peaked rows: steep tails, several rounds
    units = [(7, 0, 4), (7, 1, 3), (9, 0, 3)]
    whole = compress_rows(logits, BlockNoise(1, units, g), top_p=0.98, cap=50, k=24)
    head = compress_rows(logits[:4], BlockNoise(1, units[:1], g), top_p=0.98, cap=50, k=24)
    tail = compress_rows(logits[4:], BlockNoise(1, units[1:], g), top_p=0.98, cap=50, k=24)
    for name in whole.__dataclass_fields__:
        joined = torch.cat([getattr(head, name), getattr(tail, name)])
        assert torch.equal(getattr(whole, name), joined), name


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), top_p=st.floats(0.05, 0.999), cap=st.integers(1, 80),
       sharpness=st.floats(0.1, 8.0))
def test_nucleus_mask_is_the_stored_nucleus(seed, top_p, cap, sharpness):
    """`nucleus_mask` (the evaluation's split of the KL) marks the nucleus the extraction stores:
    its full-vocabulary reference, and the ids `compress_rows` writes."""
    vocab = 64
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, vocab, generator=gen) * sharpness
    mask = nucleus_mask(torch.log_softmax(logits.double(), -1), top_p, cap)
    c = compress_rows(logits, RandomNoise(5, gen), top_p=top_p, cap=cap, k=4)
    for row in range(logits.shape[0]):
        nucleus, _, _ = reference_compress_row(logits[row], torch.rand(vocab, generator=gen, dtype=torch.float64),
                                               top_p=top_p, cap=cap, k=4)
        marked = set(mask[row].nonzero().flatten().tolist())
        assert marked == set(nucleus.tolist())
        assert marked == set(c.top_ids[row, : int(c.top_counts[row])].tolist())
