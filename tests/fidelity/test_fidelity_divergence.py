"""Divergence measures against hand-computed values, and the grouped summaries of the original dense-dump tool."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logit_lineage.fidelity.divergence import (
    analyze_divergence,
    compare,
    compare_dumps,
    format_divergence_summary,
    js_divergence,
    kl_divergence,
    predictions_for_position,
    top1_changed,
    topk_overlap,
)
from logit_lineage.formats.dense_dump import DenseEntry

# p = (0.5, 0.5), q = (0.9, 0.1), m = (0.7, 0.3); by hand:
# KL(p‖q) = ½ ln(5/9) + ½ ln 5 = ½ ln(25/9)                 = 0.510826
# KL(q‖p) = 0.9 ln 1.8 + 0.1 ln 0.2                          = 0.368064
# KL(p‖m) = ½ ln(5/7) + ½ ln(5/3) = 0.087177;  KL(q‖m) = 0.9 ln(9/7) + 0.1 ln(1/3) = 0.116322
# JS = ½ (0.087177 + 0.116322)                               = 0.101749
P = np.log([0.5, 0.5])
Q = np.log([0.9, 0.1])


def test_kl_hand_values():
    assert kl_divergence(P, Q) == pytest.approx(0.510826, abs=1e-6)
    assert kl_divergence(Q, P) == pytest.approx(0.368064, abs=1e-6)
    assert kl_divergence(P, P) == pytest.approx(0.0, abs=1e-15)


def test_js_hand_values_and_bounds():
    assert js_divergence(P, Q) == pytest.approx(0.101749, abs=1e-6)
    assert js_divergence(Q, P) == pytest.approx(0.101749, abs=1e-6)
    # disjoint supports: JS = ln 2 exactly, KL infinite-free because p(0)=0 terms vanish
    a = np.array([0.0, -np.inf])
    b = np.array([-np.inf, 0.0])
    assert js_divergence(a, b) == pytest.approx(math.log(2), abs=1e-12)


def test_logits_not_probabilities_torch_and_batches():
    shift = torch.tensor(P) + 7.0  # logits are shift-invariant
    assert kl_divergence(shift, torch.tensor(Q) - 3.0) == pytest.approx(0.510826, abs=1e-6)
    batch = kl_divergence(np.stack([P, Q]), np.stack([Q, P]))
    assert batch == pytest.approx([0.510826, 0.368064], abs=1e-6)
    # large logits: no overflow in float32 inputs
    big = torch.tensor([1000.0, 990.0, -1000.0])
    assert math.isfinite(kl_divergence(big, big.flip(0)))


def test_top1_and_top5():
    a = np.array([5.0, 4, 3, 2, 1, 0, -1])
    b = np.array([0.0, 4, 3, 2, 1, 5, -1])  # top-1 moves from 0 to 5; top-5 shares {1,2,3,4}
    assert top1_changed(a, b) and not top1_changed(a, a)
    assert topk_overlap(a, b, 5) == pytest.approx(4 / 5)
    assert topk_overlap(a, a, 5) == 1.0
    out = compare(a, b)
    assert set(out) == {"kl", "js", "top1_changed", "top5_overlap"} and out["top1_changed"] is True
    with pytest.raises(ValueError):
        compare(a, b, metrics=["nope"])


def _entry(sample, pos, timestep, horizon, logits):
    e = DenseEntry(sample_idx=sample, example_idx=sample, position=pos, logits=torch.tensor(logits),
                   fields={"timestep": timestep, "horizon": horizon})
    e.key = f"s{sample}p{pos}t{timestep}"
    return e


def test_analyze_divergence_grouped_by_horizon():
    final = np.log([0.5, 0.5])
    entries = [
        _entry(0, 3, 2, 1, final),            # reference: last timestep
        _entry(0, 3, 0, 4, np.log([0.9, 0.1])),  # horizon 4: KL(q‖p)
        _entry(0, 3, 1, 2, final),            # horizon 2: identical
        _entry(1, 3, 0, 4, np.log([0.1, 0.9])),
        _entry(1, 3, 5, 1, final),
        _entry(1, 9, 0, 1, final),            # a single prediction: nothing to compare
    ]
    stats = analyze_divergence(entries, group_by="horizon", order_by="timestep")
    assert stats["positions"] == 3 and len(stats["pairs"]) == 3
    assert set(stats["summary"]) == {2, 4}
    assert stats["summary"][4]["n"] == 2
    assert stats["summary"][4]["kl"]["mean"] == pytest.approx(0.368064, abs=1e-6)
    assert stats["summary"][4]["top1_changed"]["mean"] == pytest.approx(0.5)  # argmax ties resolve to 0
    assert stats["summary"][2]["kl"]["mean"] == pytest.approx(0.0, abs=1e-12)
    text = format_divergence_summary(stats)
    assert "horizon 4: n = 2, KL = 0.3681 ± 0.0000" in text and "Analyzed 3 positions" in text
    only = analyze_divergence(entries, sample_idx=1, order_by="timestep")
    assert len(only["pairs"]) == 1 and only["pairs"][0]["reference_key"] == "s1p3t5"
    preds = predictions_for_position(entries, 0, 3, order_by="timestep")
    assert [p["timestep"] for p in preds] == [0, 1, 2]


def test_compare_dumps_pairs_by_position():
    a = [_entry(0, 3, 0, 1, P), _entry(0, 4, 0, 1, Q), _entry(0, 5, 0, 1, Q)]
    b = [_entry(0, 4, 0, 1, P), _entry(0, 3, 0, 1, Q)]
    stats = compare_dumps(a, b)
    assert stats["unmatched"] == 1 and len(stats["pairs"]) == 2
    kls = {p["position"]: p["kl"] for p in stats["pairs"]}
    assert kls == pytest.approx({3: 0.510826, 4: 0.368064}, abs=1e-6)
    assert "had no match" in format_divergence_summary(stats)
