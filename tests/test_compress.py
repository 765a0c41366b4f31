"""The compression kernel against a full-vocabulary reference (sort + Gumbel over all)."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.compress import block_seed, compress_rows, fill_uniforms, reference_compress_row


@settings(max_examples=40, deadline=None)
@given(
    vocab=st.integers(20, 4000),
    scale=st.floats(0.3, 8.0),
    peak=st.floats(0.0, 15.0),
    top_p=st.floats(0.5, 0.999),
    cap=st.integers(1, 120),
    k=st.integers(0, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_full_vocabulary_reference(vocab, scale, peak, top_p, cap, k, seed):
    g = torch.Generator().manual_seed(seed)
    m = 4
    logits = torch.randn((m, vocab), generator=g) * scale
    logits[:, torch.randint(vocab, (3,), generator=g)] += peak
    uniforms = torch.rand((m, vocab), generator=g, dtype=torch.float64)
    c = compress_rows(logits, uniforms, top_p=top_p, cap=cap, k=k)
    for r in range(m):
        nucleus, sampled, keys = reference_compress_row(logits[r], uniforms[r], top_p=top_p, cap=cap, k=k)
        n = int(c.top_counts[r])
        assert set(c.top_ids[r, :n].tolist()) == set(nucleus.tolist())
        # Nucleus mass reaches top_p unless the cap stopped it.
        mass = torch.exp(c.top_logits[r, :n].double() - c.logsumexp[r]).sum()
        assert n == min(cap, vocab) or mass >= top_p - 1e-9
        finite = torch.isfinite(keys[: len(sampled)])
        assert c.sampled_ids[r, : int(c.sampled_counts[r])].tolist() == sampled[finite].tolist()
        if len(keys) == k + 1 and torch.isfinite(keys[k]):
            assert abs(float(keys[k]) - float(c.threshold[r])) < 1e-6
        else:
            assert float(c.threshold[r]) == float("-inf")


def test_crossing_token_is_included():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    u = torch.rand((1, 4), dtype=torch.float64)
    c = compress_rows(logits, u, top_p=0.5, cap=10, k=2)
    assert int(c.top_counts[0]) == 1  # the top token alone reaches 0.5
    c = compress_rows(logits, u, top_p=0.79, cap=10, k=2)
    assert int(c.top_counts[0]) == 2  # 0.8 ≥ 0.79: the token that crosses p is in, no more
    c = compress_rows(logits, u, top_p=0.81, cap=10, k=2)
    assert int(c.top_counts[0]) == 3
    c = compress_rows(logits, u, top_p=0.81, cap=2, k=2)
    assert int(c.top_counts[0]) == 2  # capped


def test_lse_is_float64_accurate_on_peaked_rows():
    logits = torch.full((1, 50_000), -30.0)
    logits[0, 0] = 10.0
    c = compress_rows(logits, torch.rand((1, 50_000), dtype=torch.float64), top_p=0.98, cap=100, k=4)
    exact = 10.0 + np.log1p(49_999 * np.exp(-40.0))
    assert c.logsumexp.dtype == torch.float64
    assert float(c.logsumexp[0]) > 10.0  # float32 would round the tail mass away
    assert abs(float(c.logsumexp[0]) - exact) < 1e-12


def test_noise_depends_on_example_and_block_only():
    g = torch.Generator()
    a = torch.empty((3, 17), dtype=torch.float64)
    b = torch.empty((3, 17), dtype=torch.float64)
    fill_uniforms(a, 5, 42, 0, g)
    torch.rand(100, generator=g)  # unrelated draws in between change nothing
    fill_uniforms(b, 5, 42, 0, g)
    assert torch.equal(a, b)
    fill_uniforms(b, 5, 43, 0, g)
    assert not torch.equal(a, b)
    assert block_seed(5, 42, 0) != block_seed(5, 42, 1)
