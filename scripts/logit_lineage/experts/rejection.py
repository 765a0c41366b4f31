"""Chow's rule and the plug-in rejectors of Narasimhan et al. (ICLR 2024).

For posteriors eta(x) over C classes split into K groups (here head and tail), Theorem 1
gives the Bayes-optimal classifier and rejector for the balanced error:

    h(x) = argmax_y eta_y(x) / alpha_[y]
    reject  iff  max_y eta_y(x) / alpha_[y]  <  sum_y' (1/alpha_[y'] - mu_[y']) eta_y'(x) - c

with alpha_k = K * P(y in G_k, accepted). Algorithm 1 finds alpha by fixed-point iteration
for each mu on a grid and keeps the mu with the lowest balanced error on held-out data;
Algorithm 2 (worst group) wraps a cost-sensitive Algorithm 1, where 1/alpha_k becomes
K*beta_k/alpha_k, in exponentiated-gradient updates of the group weights beta.
Chow's rule is the special case alpha = 1, mu = 0: predict argmax eta, reject on low max eta.

The cost c is not fixed: for each target rejection rate rho it is set so that exactly the
rho fraction of samples with the lowest margin is rejected (the standard way to trace a
risk-coverage curve). Everything depends on eta only through per-group maxima and sums, so
rules are evaluated for many (rho, mu) at once on [P, N] arrays.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from logit_lineage.experts.selective import group_errors

log = logging.getLogger("logit_lineage")
ALPHA_FLOOR = 1e-4


@dataclass(frozen=True)
class GroupView:
    """What every rule needs from (eta, y), reduced to K groups."""

    group_max: np.ndarray  # [N, K] max_{y in G_k} eta_y
    group_sum: np.ndarray  # [N, K] sum_{y in G_k} eta_y
    group_correct: np.ndarray  # [N, K] bool: argmax within G_k is the true label
    sample_groups: np.ndarray  # [N] group of the true label
    n_groups: int

    @property
    def n(self) -> int:
        return int(self.sample_groups.size)

    def group_prior(self) -> np.ndarray:
        return np.bincount(self.sample_groups, minlength=self.n_groups) / self.n

    def subset(self, idx: np.ndarray) -> "GroupView":
        return GroupView(self.group_max[idx], self.group_sum[idx], self.group_correct[idx],
                         self.sample_groups[idx], self.n_groups)


def group_view(probs: np.ndarray, targets: np.ndarray, class_groups: np.ndarray) -> GroupView:
    probs = np.asarray(probs, dtype=np.float64)
    class_groups = np.asarray(class_groups, dtype=np.int64)
    k_groups = int(class_groups.max()) + 1
    n = probs.shape[0]
    gmax = np.empty((n, k_groups))
    gsum = np.empty((n, k_groups))
    gcorrect = np.empty((n, k_groups), dtype=bool)
    for k in range(k_groups):
        cls = np.flatnonzero(class_groups == k)
        sub = probs[:, cls]
        arg = sub.argmax(axis=1)
        gmax[:, k] = sub[np.arange(n), arg]
        gsum[:, k] = sub.sum(axis=1)
        gcorrect[:, k] = cls[arg] == targets
    return GroupView(gmax, gsum, gcorrect, class_groups[targets], k_groups)


def reject_lowest(margin: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Accept mask [P, N]: in row p, the round(rho_p * N) lowest margins are rejected."""
    n = margin.shape[-1]
    n_rej = np.clip(np.rint(np.asarray(rho) * n).astype(np.int64), 0, n - 1)
    cut = np.empty(margin.shape[0], dtype=margin.dtype)
    # Rows that share a rate share a cut position: one O(N) selection per distinct rate.
    for k in np.unique(n_rej):
        rows = np.flatnonzero(n_rej == k)
        cut[rows] = np.partition(margin[rows], k, axis=-1)[:, k]
    # Ties at the cut are accepted; with continuous posteriors they do not occur in practice.
    return margin >= cut[:, None]


def apply_rule(view: GroupView, u: np.ndarray, mu: np.ndarray, rho: np.ndarray):
    """Evaluate P rules at once. u = per-group weight on eta (1/alpha, or K*beta/alpha).

    margin(x) = max_k u_k max_{y in G_k} eta_y - sum_k (u_k - mu_k) sum_{y in G_k} eta_y;
    the rule predicts the top class of the winning group and rejects the lowest margins.
    Returns (correct [P, N], accepted [P, N]).
    """
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    mu = np.atleast_2d(np.asarray(mu, dtype=np.float64))
    gmax = view.group_max.astype(np.float32, copy=False)
    gsum = view.group_sum.astype(np.float32, copy=False)
    best = np.multiply.outer(u[:, 0].astype(np.float32), gmax[:, 0])  # [P, N]
    pred_group = np.zeros(best.shape, dtype=np.int8)
    for k in range(1, view.n_groups):
        score = np.multiply.outer(u[:, k].astype(np.float32), gmax[:, k])
        better = score > best
        np.copyto(best, score, where=better)
        pred_group[better] = k
    # Group sums add up to 1, so group 0's threshold term is a per-rule constant that the
    # rate-matched cut absorbs: only the other groups' terms change the ranking.
    lam = (u - mu) - (u - mu)[:, :1]
    for k in range(1, view.n_groups):
        best -= np.multiply.outer(lam[:, k].astype(np.float32), gsum[:, k])
    accepted = reject_lowest(best, np.broadcast_to(rho, (u.shape[0],)))
    correct = np.broadcast_to(view.group_correct[:, 0], best.shape).copy()
    for k in range(1, view.n_groups):
        np.copyto(correct, view.group_correct[:, k][None, :], where=pred_group == k)
    return correct, accepted


def mu_candidates(grid: np.ndarray, n_groups: int) -> np.ndarray:
    """All mu vectors with mu_0 = 0 and the others from `grid`: a common shift of mu moves
    every margin by the same amount, which the rate-matched cost c absorbs."""
    rows = [(0.0, *rest) for rest in itertools.product(np.asarray(grid, dtype=np.float64), repeat=n_groups - 1)]
    return np.asarray(rows, dtype=np.float64)


@dataclass
class PluginFit:
    """Per target rate: the fitted alpha, mu, group weights beta, and diagnostics."""

    rates: np.ndarray  # [R]
    alpha: np.ndarray  # [R, K]
    mu: np.ndarray  # [R, K]
    beta: np.ndarray  # [R, K]
    fit_objective: np.ndarray  # [R] objective on the fitting data
    mu_at_grid_edge: np.ndarray  # [R] bool: the chosen mu lies on the border of the grid

    def weights(self) -> np.ndarray:
        """u = K * beta / alpha: the per-group multiplier of eta in both rule parts."""
        k = self.alpha.shape[1]
        return k * self.beta / np.maximum(self.alpha, ALPHA_FLOOR)

    def as_dict(self) -> dict:
        return {
            "rates": self.rates.tolist(), "alpha": self.alpha.tolist(), "mu": self.mu.tolist(),
            "beta": self.beta.tolist(), "fit_objective": self.fit_objective.tolist(),
            "mu_at_grid_edge": self.mu_at_grid_edge.tolist(),
        }


def _fixed_point(view: GroupView, rates: np.ndarray, mus: np.ndarray, beta: np.ndarray, iters: int):
    """Algorithm 1's inner loop for every (rate, mu) pair: alpha <- K * P(y in G_k, accepted).

    Returns alpha [R, G, K] and the group errors [R, G, K] of the rule built from it.
    """
    r, g, k = len(rates), len(mus), view.n_groups
    rho = np.repeat(rates, g)
    mu = np.tile(mus, (r, 1))
    b = np.repeat(beta, g, axis=0)
    onehot = np.eye(k)[view.sample_groups]
    # Start from "accept everything in proportion": alpha_k = K * P(G_k) * (1 - rho).
    alpha = k * view.group_prior()[None, :] * (1.0 - rho)[:, None]
    # alpha comes from counts, so most rows land exactly on their fixed point within a few
    # steps; only rows still moving are recomputed (some cycle between two count vectors
    # and stop at `iters`).
    active = np.arange(len(rho))
    for _ in range(iters):
        u = k * b[active] / np.maximum(alpha[active], ALPHA_FLOOR)
        _, accepted = apply_rule(view, u, mu[active], rho[active])
        new_alpha = k * (accepted.astype(np.float64) @ onehot) / view.n
        moving = np.abs(new_alpha - alpha[active]).max(axis=1) > 1e-9
        alpha[active] = new_alpha
        active = active[moving]
        if active.size == 0:
            break
    u = k * b / np.maximum(alpha, ALPHA_FLOOR)
    correct, accepted = apply_rule(view, u, mu, rho)
    errs = group_errors(correct, accepted, view.sample_groups, k, smoothed=True)
    return alpha.reshape(r, g, k), errs.reshape(r, g, k)


def fit_plugin(view: GroupView, rates, mu_grid, iters: int = 10, beta: np.ndarray | None = None) -> PluginFit:
    """Algorithm 1 (cost-sensitive plug-in): per rate, the mu on the grid whose fixed-point
    alpha gives the lowest beta-weighted group error on `view` (balanced: beta = 1/K)."""
    rates = np.asarray(rates, dtype=np.float64)
    k = view.n_groups
    if beta is None:
        beta = np.full((len(rates), k), 1.0 / k)
    mus = mu_candidates(mu_grid, k)
    alpha, errs = _fixed_point(view, rates, mus, beta, iters)
    objective = (errs * beta[:, None, :]).sum(axis=-1)  # [R, G]
    # Among equally good mu (e.g. every mu at rate 0, where nothing is rejected) take the
    # smallest |mu|, so a flat objective does not read as "optimum on the grid border".
    ties = objective <= objective.min(axis=1, keepdims=True) + 1e-12
    best = np.where(ties, np.abs(mus).sum(axis=1)[None, :], np.inf).argmin(axis=1)
    rows = np.arange(len(rates))
    grid = np.asarray(mu_grid, dtype=np.float64)
    chosen = mus[best]
    edge = np.isclose(chosen[:, 1:], grid.min()).any(axis=1) | np.isclose(chosen[:, 1:], grid.max()).any(axis=1)
    return PluginFit(rates, alpha[rows, best], chosen, beta.copy(), objective[rows, best], edge)


def fit_worst_group(view_s1: GroupView, view_s2: GroupView, rates, mu_grid, iters: int = 10,
                    eg_iters: int = 20, eg_step: float = 1.0) -> PluginFit:
    """Algorithm 2: exponentiated-gradient ascent on group weights beta.

    Each round fits the beta-weighted plug-in (Algorithm 1) on S1, measures the group errors
    on S2 and raises beta_k in proportion to exp(step * err_k). Per rate, the round with the
    lowest worst-group error on S2 is kept.
    """
    rates = np.asarray(rates, dtype=np.float64)
    k = view_s1.n_groups
    beta = np.full((len(rates), k), 1.0 / k)
    best_fit, best_worst = None, np.full(len(rates), np.inf)
    for _ in range(eg_iters):
        fit = fit_plugin(view_s1, rates, mu_grid, iters, beta)
        correct, accepted = apply_rule(view_s2, fit.weights(), fit.mu, rates)
        errs = group_errors(correct, accepted, view_s2.sample_groups, k, smoothed=True)  # [R, K]
        worst = errs.max(axis=1)
        if best_fit is None:
            best_fit = fit
            best_worst = worst.copy()
        else:
            better = worst < best_worst
            for name in ("alpha", "mu", "beta"):
                getattr(best_fit, name)[better] = getattr(fit, name)[better]
            best_fit.fit_objective[better] = worst[better]
            best_fit.mu_at_grid_edge[better] = fit.mu_at_grid_edge[better]
            best_worst = np.minimum(best_worst, worst)
        beta = beta * np.exp(eg_step * errs)
        beta /= beta.sum(axis=1, keepdims=True)
    best_fit.fit_objective = best_worst
    return best_fit


def chow_weights(n_rates: int, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Chow's rule in plug-in form: u = 1 (plain argmax eta), mu = 0 (reject on max eta)."""
    return np.ones((n_rates, n_groups)), np.zeros((n_rates, n_groups))
