"""Fit the rejectors on val, evaluate every predictor and rule on test, summarise."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import fill_defaults, schema_defaults
from logit_lineage.experts.rejection import (
    apply_rule,
    chow_weights,
    fit_plugin,
    fit_worst_group,
    group_view,
)
from logit_lineage.experts.selective import aurc, summarize

log = logging.getLogger("logit_lineage")
METHODS = ("chow", "plugin_balanced", "plugin_worst")


# Defaults: experts.rejection in workflow/schemas/experts.schema.yaml (field names differ
# from the schema's nested keys, so each is read here by name).
_DEFAULTS = schema_defaults("experts", "rejection")


@dataclass(frozen=True)
class RejectionSpec:
    rates: tuple = tuple(_DEFAULTS["rates"])
    mu_min: float = _DEFAULTS["mu_grid"]["min"]
    mu_max: float = _DEFAULTS["mu_grid"]["max"]
    mu_steps: int = _DEFAULTS["mu_grid"]["steps"]
    fixed_point_iters: int = _DEFAULTS["fixed_point_iters"]
    eg_iters: int = _DEFAULTS["worst_group"]["iters"]
    eg_step: float = _DEFAULTS["worst_group"]["step"]
    seed: int = 0

    def mu_grid(self) -> np.ndarray:
        return np.linspace(self.mu_min, self.mu_max, self.mu_steps)

    def as_dict(self) -> dict:
        return {"rates": list(self.rates), "mu_grid": [self.mu_min, self.mu_max, self.mu_steps],
                "fixed_point_iters": self.fixed_point_iters, "eg_iters": self.eg_iters,
                "eg_step": self.eg_step, "seed": self.seed}


def rejection_spec(cfg: dict, seed: int) -> RejectionSpec:
    """RejectionSpec from the experts.rejection config section (schema key names)."""
    known = {"rates", "mu_grid", "fixed_point_iters", "worst_group"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise LineageError(f"unknown config key 'experts.rejection.{unknown[0]}' (known: {', '.join(sorted(known))})")
    cfg = fill_defaults(cfg, "experts", "rejection")
    grid, worst = cfg["mu_grid"], cfg["worst_group"]
    rates = tuple(float(r) for r in cfg["rates"])
    if len(rates) < 2 or min(rates) < 0 or max(rates) >= 1:
        raise LineageError("config key 'experts.rejection.rates' needs at least two rates in [0, 1)")
    spec = RejectionSpec(
        rates=tuple(sorted(set(rates))),
        mu_min=float(grid["min"]),
        mu_max=float(grid["max"]),
        mu_steps=int(grid["steps"]),
        fixed_point_iters=int(cfg["fixed_point_iters"]),
        eg_iters=int(worst["iters"]),
        eg_step=float(worst["step"]),
        seed=seed,
    )
    if spec.mu_max < spec.mu_min:
        raise LineageError("config key 'experts.rejection.mu_grid.max' is below 'min'")
    return spec


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 2 needs two disjoint sets: S1 fits the plug-in, S2 drives the group weights."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def evaluate_predictor(val_probs, val_y, test_probs, test_y, class_groups, spec: RejectionSpec) -> dict:
    """All three rules for one predictor: fitted on val, measured on test at every rate."""
    rates = np.asarray(spec.rates, dtype=np.float64)
    class_groups = np.asarray(class_groups)
    v_val = group_view(val_probs, val_y, class_groups)
    v_test = group_view(test_probs, test_y, class_groups)
    k = v_val.n_groups
    fits = {
        "plugin_balanced": fit_plugin(v_val, rates, spec.mu_grid(), spec.fixed_point_iters),
    }
    s1, s2 = split_halves(v_val.n, spec.seed)
    fits["plugin_worst"] = fit_worst_group(
        v_val.subset(s1), v_val.subset(s2), rates, spec.mu_grid(), spec.fixed_point_iters,
        spec.eg_iters, spec.eg_step,
    )
    weights = {"chow": chow_weights(len(rates), k)}
    weights.update({name: (fit.weights(), fit.mu) for name, fit in fits.items()})
    out = {}
    for method in METHODS:
        u, mu = weights[method]
        correct, accepted = apply_rule(v_test, u, mu, rates)
        points = [summarize(correct[i], accepted[i], v_test.sample_groups, k) for i in range(len(rates))]
        for point, rate in zip(points, rates):
            point["target_rate"] = float(rate)
        realized = [p["rejection_rate"] for p in points]
        out[method] = {
            "curve": points,
            "aurc_balanced": aurc(realized, [p["balanced_error"] for p in points]),
            "aurc_worst": aurc(realized, [p["worst_group_error"] for p in points]),
            "fit": fits[method].as_dict() if method in fits else None,
        }
        if method in fits and fits[method].mu_at_grid_edge.any():
            log.warning("%s: chosen mu on the grid border at rates %s; widen the mu grid",
                        method, rates[fits[method].mu_at_grid_edge].tolist())
    return out
