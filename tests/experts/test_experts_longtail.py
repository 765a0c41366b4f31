"""Domain logic of the experts chain: data, losses, gating features, rejection rules, AURC."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.experts.data import GeneratorSpec, class_counts, classes_info, generate
from logit_lineage.experts.evaluate import RejectionSpec, evaluate_predictor, rejection_spec
from logit_lineage.experts.gating import class_balance_weights, feature_names, gating_features, mixture_log_probs
from logit_lineage.experts.losses import logit_shift, make_loss
from logit_lineage.experts.rejection import (
    apply_rule,
    chow_weights,
    fit_plugin,
    fit_worst_group,
    group_view,
    mu_candidates,
)
from logit_lineage.experts.selective import aurc, group_errors

# --- data -----------------------------------------------------------------------------

def test_class_counts_follow_the_cifar100_lt_profile():
    counts = class_counts(100, 500, 100)
    assert counts[0] == 500 and counts[-1] == 5  # 500 * 100^-1 must not floor to 4
    assert counts[50] == math.floor(500 * 100 ** (-50 / 99))
    assert (np.diff(counts) <= 0).all()
    info = classes_info(counts, 20, {})
    assert info["n_head"] == 69 and info["n_tail"] == 31  # head: more than 20 examples
    assert info["groups"][68] == 0 and counts[68] == 21 and info["groups"][69] == 1
    assert math.isclose(sum(info["prior"]), 1.0)


def test_one_group_only_is_an_error():
    with pytest.raises(LineageError, match="head_threshold=1000 puts every class in one group"):
        classes_info(class_counts(10, 50, 10), 1000, {})


def test_generated_splits_are_deterministic_balanced_and_disjoint():
    spec = GeneratorSpec(n_classes=10, n_max=40, imbalance_factor=10, feature_dim=4, per_class=(("tunev", 3), ("val", 4), ("test", 5)))
    a, b = generate(spec, 7), generate(spec, 7)
    for split in a:
        np.testing.assert_array_equal(a[split][0], b[split][0])
    assert not np.array_equal(generate(spec, 8)["test"][0], a["test"][0])
    np.testing.assert_array_equal(np.bincount(a["train"][1]), class_counts(10, 40, 10))
    for split, n in (("tunev", 3), ("val", 4), ("test", 5)):
        assert (np.bincount(a[split][1], minlength=10) == n).all()
    rows = {tuple(r) for s in a for r in a[s][0]}
    assert len(rows) == sum(len(a[s][1]) for s in a)  # no example shared between splits


# --- losses ---------------------------------------------------------------------------

Z = torch.tensor([[1.0, 0.0, 0.0]])
Y = torch.tensor([2])
COUNTS = [6, 3, 1]  # prior 0.6, 0.3, 0.1


def test_ce_loss_by_hand():
    assert make_loss("ce", COUNTS)(Z, Y).item() == pytest.approx(math.log(math.e + 2))


def test_logit_adjusted_loss_by_hand():
    # softmax over z + log(prior): exp terms 0.6e, 0.3, 0.1 -> -log(0.1 / (0.6e + 0.4))
    assert make_loss("logitadjust", COUNTS, tau=1.0)(Z, Y).item() == pytest.approx(math.log((0.6 * math.e + 0.4) / 0.1), rel=1e-6)
    # tau = 2: exp terms 0.36e, 0.09, 0.01
    assert make_loss("logitadjust", COUNTS, tau=2.0)(Z, Y).item() == pytest.approx(math.log((0.36 * math.e + 0.1) / 0.01), rel=1e-6)


def test_balanced_softmax_loss_by_hand():
    # softmax over z + log(n): exp terms 6e, 3, 1 -> -log(1 / (6e + 4)); equals LA with tau = 1
    assert make_loss("balsoftmax", COUNTS)(Z, Y).item() == pytest.approx(math.log(6 * math.e + 4), rel=1e-6)
    np.testing.assert_allclose(logit_shift("balsoftmax", COUNTS) - logit_shift("logitadjust", COUNTS), math.log(10))


def test_unknown_loss():
    with pytest.raises(LineageError, match="unknown loss 'focal'"):
        logit_shift("focal", COUNTS)


# --- gating ---------------------------------------------------------------------------

def test_gating_features_by_hand():
    c = 10
    flat = np.zeros(c)
    flat[1] = 1e-6  # (almost) uniform, top-1 is class 1
    sharp = np.zeros(c)
    sharp[0] = 100.0  # one-hot on class 0
    f = gating_features(np.stack([flat, sharp])[None], class_groups=np.array([0] * 5 + [1] * 5))[0]
    names = feature_names(["flat", "sharp"])
    v = dict(zip(names, f))
    # mean posterior: 0.55 on class 0, 0.05 elsewhere
    norm_bar = math.sqrt(0.55 ** 2 + 9 * 0.05 ** 2)
    assert v["flat.entropy"] == pytest.approx(math.log(10), abs=1e-4)
    assert v["flat.top5_mass"] == pytest.approx(0.5, abs=1e-4)
    assert v["flat.max_prob"] == pytest.approx(0.1, abs=1e-4)
    assert v["flat.top1_top2_gap"] == pytest.approx(0.0, abs=1e-4)
    assert v["flat.cosine_to_mean"] == pytest.approx(0.1 / (math.sqrt(0.1) * norm_bar), abs=1e-4)
    assert v["flat.kl_to_mean"] == pytest.approx(0.1 * math.log(0.1 / 0.55) + 0.9 * math.log(2), abs=1e-4)
    assert v["sharp.entropy"] == pytest.approx(0.0, abs=1e-4)
    assert v["sharp.top5_mass"] == pytest.approx(1.0, abs=1e-4)
    assert v["sharp.top1_top2_gap"] == pytest.approx(1.0, abs=1e-4)
    assert v["sharp.cosine_to_mean"] == pytest.approx(0.55 / norm_bar, abs=1e-4)
    assert v["sharp.kl_to_mean"] == pytest.approx(math.log(1 / 0.55), abs=1e-4)
    assert v["mean_max_prob"] == pytest.approx(0.55, abs=1e-4)
    assert v["mean_entropy"] == pytest.approx(-(0.55 * math.log(0.55) + 9 * 0.05 * math.log(0.05)), abs=1e-4)
    assert v["top1_agreement"] == pytest.approx(0.5)
    assert v["mean_tail_mass"] == pytest.approx(0.25, abs=1e-4)


def test_mixture_is_the_weighted_average_of_expert_posteriors():
    logits = torch.randn(5, 3, 7)
    w = torch.softmax(torch.randn(5, 3), dim=-1)
    eta = torch.exp(mixture_log_probs(w, logits))
    expected = (w[..., None] * torch.softmax(logits, -1)).sum(1)
    torch.testing.assert_close(eta, expected)


def test_class_balance_weights_undo_imbalance():
    y = np.array([0, 0, 0, 1])
    w = class_balance_weights(y, 2)
    per_sample = w[y]
    assert per_sample.mean() == pytest.approx(1.0)
    assert per_sample[y == 0].sum() == pytest.approx(per_sample[y == 1].sum())


# --- rejection rules ------------------------------------------------------------------

# Four classes: 0, 1 head; 2, 3 tail. Worked by hand in the comments.
ETA = np.array([
    [0.70, 0.10, 0.10, 0.10],  # y=0
    [0.40, 0.00, 0.35, 0.25],  # y=2
    [0.30, 0.30, 0.20, 0.20],  # y=1
    [0.10, 0.10, 0.50, 0.30],  # y=3
])
Y4 = np.array([0, 2, 1, 3])
G4 = np.array([0, 0, 1, 1])


def test_plugin_rule_small_case_by_hand():
    view = group_view(ETA, Y4, G4)
    u = np.array([[1 / 1.5, 1 / 0.5]])  # alpha = (1.5, 0.5)
    # h = argmax eta_y / alpha_[y]: x1 -> 0 (0.467 > 0.2), x2 -> 2 (0.7 > 0.267), x3 -> 2, x4 -> 2
    correct, accepted = apply_rule(view, u, np.zeros((1, 2)), np.array([0.0]))
    assert correct[0].tolist() == [True, True, False, False] and accepted.all()
    # Chow predicts argmax eta: x2 -> 0 (wrong), x3 -> 0 (wrong; the tie is broken to the first class)
    c_correct, _ = apply_rule(view, *chow_weights(1, 2), np.array([0.0]))
    assert c_correct[0].tolist() == [True, False, False, False]
    # margins max - sum (1/alpha - mu) eta with mu = 0: -0.467, -0.767, -0.8, -0.733
    _, acc = apply_rule(view, u, np.zeros((1, 2)), np.array([0.25]))
    assert acc[0].tolist() == [True, True, False, True]
    _, acc = apply_rule(view, u, np.zeros((1, 2)), np.array([0.5]))
    assert acc[0].tolist() == [True, False, False, True]
    # mu_tail = 1 lowers the tail-heavy thresholds: margins -0.267, -0.167, -0.4, +0.067
    _, acc = apply_rule(view, u, np.array([[0.0, 1.0]]), np.array([0.5]))
    assert acc[0].tolist() == [False, True, False, True]


def _reference_rule(eta, alpha_k, mu_k, groups, c):
    """The paper's Theorem 1 written out per class, with an explicit cost c."""
    alpha = alpha_k[groups]
    mu = mu_k[groups]
    scores = eta / alpha
    h = scores.argmax(1)
    reject = scores.max(1) < (eta * (1 / alpha - mu)).sum(1) - c
    return h, reject


def test_vectorised_rule_matches_the_theorem_on_random_posteriors():
    rng = np.random.default_rng(3)
    eta = rng.dirichlet(np.full(12, 0.4), size=400)
    y = rng.integers(0, 12, 400)
    groups = (np.arange(12) >= 8).astype(int)
    view = group_view(eta, y, groups)
    alpha_k, mu_k = np.array([1.3, 0.4]), np.array([0.2, -0.5])
    for rho in (0.1, 0.35, 0.7):
        correct, accepted = apply_rule(view, 1 / alpha_k[None], mu_k[None], np.array([rho]))
        margins = (eta / alpha_k[groups]).max(1) - (eta * (1 / alpha_k[groups] - mu_k[groups])).sum(1)
        k = int(round(rho * 400))
        # any cost between the k-th and (k+1)-th lowest margin rejects exactly k samples
        c = -(np.sort(margins)[k - 1] + np.sort(margins)[k]) / 2
        h, reject = _reference_rule(eta, alpha_k, mu_k, groups, c)
        np.testing.assert_array_equal(accepted[0], ~reject)
        np.testing.assert_array_equal(correct[0], h == y)


def test_fixed_point_alpha_matches_acceptance():
    rng = np.random.default_rng(0)
    eta = rng.dirichlet(np.full(10, 0.3), size=600)
    y = rng.integers(0, 10, 600)
    groups = (np.arange(10) >= 7).astype(int)
    view = group_view(eta, y, groups)
    rates = np.array([0.0, 0.3, 0.6])
    fit = fit_plugin(view, rates, np.linspace(-1, 1, 11), iters=30)
    # no rejection: alpha_k = K * P(y in G_k)
    np.testing.assert_allclose(fit.alpha[0], 2 * np.bincount(groups[y], minlength=2) / 600)
    np.testing.assert_allclose(fit.mu[0], 0.0)  # mu cannot matter when nothing is rejected
    np.testing.assert_allclose(fit.alpha.sum(1), 2 * (1 - rates), atol=2 / 600)
    for i, rho in enumerate(rates):
        _, acc = apply_rule(view, fit.weights()[i:i + 1], fit.mu[i:i + 1], np.array([rho]))
        observed = 2 * np.bincount(groups[y][acc[0]], minlength=2) / 600
        np.testing.assert_allclose(observed, fit.alpha[i], atol=0.02)


def _head_biased(n=3000, seed=0):
    """Posteriors of a head-biased model: tail classes lose mass to head classes."""
    rng = np.random.default_rng(seed)
    c, groups = 20, (np.arange(20) >= 12).astype(int)
    y = rng.integers(0, c, n)
    logits = rng.standard_normal((n, c)) * 1.0
    logits[np.arange(n), y] += 2.0
    logits[:, groups == 0] += 1.0  # the bias Chow's rule inherits
    eta = np.exp(logits)
    return eta / eta.sum(1, keepdims=True), y, groups


def test_plugin_beats_chow_on_head_biased_posteriors():
    eta, y, groups = _head_biased()
    spec = RejectionSpec(rates=(0.0, 0.2, 0.4, 0.6), mu_steps=21, eg_iters=5)
    half = len(y) // 2
    res = evaluate_predictor(eta[:half], y[:half], eta[half:], y[half:], groups, spec)
    assert res["plugin_balanced"]["aurc_balanced"] < res["chow"]["aurc_balanced"] - 0.02
    assert res["plugin_worst"]["aurc_worst"] < res["chow"]["aurc_worst"] - 0.02


def test_worst_group_weights_move_toward_the_worse_group():
    eta, y, groups = _head_biased()
    view = group_view(eta, y, groups)
    s1, s2 = view.subset(np.arange(0, 3000, 2)), view.subset(np.arange(1, 3000, 2))
    fit = fit_worst_group(s1, s2, np.array([0.2]), np.linspace(-2, 2, 21), iters=10, eg_iters=5)
    balanced = fit_plugin(s1, np.array([0.2]), np.linspace(-2, 2, 21), iters=10)
    errs_w = group_errors(*apply_rule(s2, fit.weights(), fit.mu, np.array([0.2])), s2.sample_groups, 2)
    errs_b = group_errors(*apply_rule(s2, balanced.weights(), balanced.mu, np.array([0.2])), s2.sample_groups, 2)
    assert errs_w.max() <= errs_b.max() + 1e-9


def test_mu_candidates_fix_the_first_group():
    m = mu_candidates(np.array([-1.0, 0.0, 1.0]), 3)
    assert m.shape == (9, 3) and (m[:, 0] == 0).all()


def test_empty_group_counts_as_all_wrong():
    errs = group_errors(np.array([[True, True]]), np.array([[True, False]]), np.array([0, 1]), 2)
    assert errs.tolist() == [[0.0, 1.0]]


def test_smoothed_errors_distrust_tiny_groups():
    correct = np.array([[True] * 10 + [True]])
    accepted = np.ones_like(correct)
    groups = np.array([0] * 10 + [1])
    # plain: both groups perfect; Laplace: 1/12 for ten right, 1/3 for a single right answer
    assert group_errors(correct, accepted, groups, 2).tolist() == [[0.0, 0.0]]
    np.testing.assert_allclose(group_errors(correct, accepted, groups, 2, smoothed=True), [[1 / 12, 1 / 3]])


# --- AURC -----------------------------------------------------------------------------

def test_aurc_of_known_curves():
    rates = np.linspace(0, 0.8, 17)
    assert aurc(rates, np.full(17, 0.3)) == pytest.approx(0.3)
    # error 0.5 - 0.5 * rho over [0, 0.8]: mean = 0.5 - 0.5 * 0.4 = 0.3
    assert aurc(rates, 0.5 - 0.5 * rates) == pytest.approx(0.3)
    # order of the points does not matter; a convex curve by trapezoids: x^2 on [0, 1] -> ~1/3
    x = np.linspace(0, 1, 201)
    assert aurc(x[::-1], x[::-1] ** 2) == pytest.approx(1 / 3, abs=1e-4)


def test_rejection_spec_rejects_unknown_keys():
    with pytest.raises(LineageError, match="unknown config key 'experts.rejection.grid'"):
        rejection_spec({"grid": {}}, 0)
    assert rejection_spec({"mu_grid": {"min": -1, "max": 1, "steps": 3}}, 0).mu_grid().tolist() == [-1, 0, 1]
