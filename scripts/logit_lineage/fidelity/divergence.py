"""Divergence between two predictions of the same position (the analysis of the original dense-dump tool,
`utils/load_saved_logits.py`, which is not in this repository).

All measures take raw logits (any shape [..., V], torch or numpy) and work in
float64 on log-softmax, so large logits neither overflow nor lose the tail:

- `kl_divergence(a, b)` = KL(P_a ‖ P_b) = Σ p_a (log p_a − log p_b), in nats;
- `js_divergence(a, b)` = ½ KL(P_a ‖ M) + ½ KL(P_b ‖ M), M = ½ (P_a + P_b),
  in nats (so 0 ≤ JS ≤ ln 2);
- `top1_changed(a, b)`: the argmax differs;
- `topk_overlap(a, b, k)`: |top-k(a) ∩ top-k(b)| / k (k = 5 for "top-5 overlap").

`analyze_divergence` groups the predictions of a dump by position, compares
each one with that position's reference prediction (the last one by an
ordering field, e.g. the final timestep) and summarizes by a metadata field
(e.g. horizon); `compare_dumps` pairs two dumps entry by entry.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

METRICS = ("kl", "js", "top1", "top5")


def _logprobs(logits) -> np.ndarray:
    if hasattr(logits, "detach"):
        logits = logits.detach().to("cpu").double().numpy()
    z = np.asarray(logits, dtype=np.float64)
    m = np.max(z, axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def kl_from_logprobs(lp_a: np.ndarray, lp_b: np.ndarray) -> np.ndarray:
    p_a = np.exp(lp_a)
    # 0·log 0 = 0: tokens P_a gives no mass contribute nothing, even where P_b is 0 too.
    with np.errstate(invalid="ignore"):
        terms = np.where(p_a > 0, p_a * (lp_a - lp_b), 0.0)
    return np.maximum(terms.sum(-1), 0.0)


def kl_divergence(a, b):
    """KL(softmax(a) ‖ softmax(b)) in nats (a float for 1-D input)."""
    out = kl_from_logprobs(_logprobs(a), _logprobs(b))
    return float(out) if np.ndim(out) == 0 else out


def js_divergence(a, b):
    """Jensen–Shannon divergence of softmax(a) and softmax(b) in nats."""
    lp_a, lp_b = _logprobs(a), _logprobs(b)
    lp_m = np.logaddexp(lp_a, lp_b) - math.log(2.0)
    out = np.clip(0.5 * kl_from_logprobs(lp_a, lp_m) + 0.5 * kl_from_logprobs(lp_b, lp_m), 0.0, math.log(2.0))
    return float(out) if np.ndim(out) == 0 else out


def _as_numpy(logits) -> np.ndarray:
    if hasattr(logits, "detach"):
        return logits.detach().to("cpu").double().numpy()
    return np.asarray(logits, dtype=np.float64)


def top1_changed(a, b) -> bool:
    return bool(np.argmax(_as_numpy(a)) != np.argmax(_as_numpy(b)))


def top_k_ids(logits, k: int) -> np.ndarray:
    z = _as_numpy(logits)
    k = min(k, z.shape[-1])
    ids = np.argpartition(-z, k - 1)[:k]
    return ids[np.argsort(-z[ids], kind="stable")]


def topk_overlap(a, b, k: int = 5) -> float:
    """Fraction of the top-k tokens of `a` that are also among the top-k of `b`."""
    k_eff = min(k, _as_numpy(a).shape[-1])
    return len(set(top_k_ids(a, k_eff).tolist()) & set(top_k_ids(b, k_eff).tolist())) / k_eff


def compare(a, b, metrics: Sequence[str] = METRICS) -> dict:
    """The chosen measures between two predictions of the same position."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    out = {}
    if "kl" in metrics:
        out["kl"] = kl_divergence(a, b)
    if "js" in metrics:
        out["js"] = js_divergence(a, b)
    if "top1" in metrics:
        out["top1_changed"] = top1_changed(a, b)
    if "top5" in metrics:
        out["top5_overlap"] = topk_overlap(a, b, 5)
    return out


def _get(entry, name):
    return entry[name]


def predictions_for_position(entries: Iterable, sample_idx: int, position: int, *,
                             position_field: str = "position", order_by: str | None = None) -> list:
    """All predictions made for one position of one sample, sorted by `order_by` if given."""
    found = [e for e in entries if _get(e, "sample_idx") == sample_idx and _get(e, position_field) == position]
    if order_by is not None:
        found.sort(key=lambda e: _get(e, order_by))
    return found


def _summarize(pairs: list[dict], group_by: str | None) -> dict:
    groups: dict = defaultdict(list)
    for p in pairs:
        groups[p.get("group") if group_by else "all"].append(p)
    summary = {}
    for value in sorted(groups, key=lambda v: (v is None, str(type(v)), v)):
        rows = groups[value]
        stats = {"n": len(rows)}
        for name in ("kl", "js", "top1_changed", "top5_overlap"):
            vals = np.array([float(r[name]) for r in rows if name in r], dtype=np.float64)
            if vals.size:
                stats[name] = {"mean": float(vals.mean()), "std": float(vals.std()),
                               "median": float(np.median(vals)), "max": float(vals.max())}
        summary[value] = stats
    return summary


def analyze_divergence(entries: Iterable, *, sample_idx: int | None = None, group_by: str | None = None,
                       order_by: str | None = None, position_field: str = "position",
                       metrics: Sequence[str] = METRICS) -> dict:
    """Compare every prediction of a position with that position's reference.

    Predictions are grouped by (sample_idx, position); the reference is the last
    one by `order_by` (e.g. "timestep": the final prediction), or the last stored
    when no order is given. Each other prediction is compared with it; the
    comparisons are summarized per value of `group_by` (e.g. "horizon").
    Returns {"pairs": [...], "summary": {group value: stats}, "positions": n, "group_by": ...}.
    """
    by_position: dict = defaultdict(list)
    for e in entries:
        if sample_idx is not None and _get(e, "sample_idx") != sample_idx:
            continue
        by_position[(_get(e, "sample_idx"), _get(e, position_field))].append(e)
    pairs = []
    for (sample, pos), preds in sorted(by_position.items()):
        if order_by is not None:
            preds = sorted(preds, key=lambda e: _get(e, order_by))
        reference = preds[-1]
        for pred in preds[:-1]:
            row = {"sample_idx": sample, "position": pos, "key": _get(pred, "key"),
                   "reference_key": _get(reference, "key")}
            if group_by:
                row["group"] = _get(pred, group_by)
            row.update(compare(pred["logits"], reference["logits"], metrics))
            pairs.append(row)
    return {"pairs": pairs, "summary": _summarize(pairs, group_by), "positions": len(by_position),
            "group_by": group_by, "reference": f"last by {order_by}" if order_by else "last stored"}


def compare_dumps(entries_a: Iterable, entries_b: Iterable, *, match_on: Sequence[str] = ("example_idx", "position"),
                  group_by: str | None = None, metrics: Sequence[str] = METRICS) -> dict:
    """Pair entries of two dumps by `match_on` and compare A against B (KL(A ‖ B))."""
    index_b = {}
    for e in entries_b:
        index_b.setdefault(tuple(_get(e, f) for f in match_on), e)
    pairs, unmatched = [], 0
    for a in entries_a:
        match = tuple(_get(a, f) for f in match_on)
        b = index_b.get(match)
        if b is None:
            unmatched += 1
            continue
        row = {"key": _get(a, "key"), "other_key": _get(b, "key"), **dict(zip(match_on, match))}
        if group_by:
            row["group"] = _get(a, group_by)
        row.update(compare(a["logits"], b["logits"], metrics))
        pairs.append(row)
    return {"pairs": pairs, "summary": _summarize(pairs, group_by), "positions": len(pairs),
            "unmatched": unmatched, "group_by": group_by, "reference": "second dump"}


def format_divergence_summary(stats: dict) -> str:
    """The original dense-dump tool's printed summary, one line per group."""
    bar = "=" * 62
    label = stats.get("group_by") or "all"
    lines = [bar, "PREDICTION DIVERGENCE ANALYSIS", bar, "", f"Summary by {label} (reference: {stats['reference']}):",
             "-" * 62]
    for value, s in stats["summary"].items():
        parts = [f"n = {s['n']}"]
        if "kl" in s:
            parts.append(f"KL = {s['kl']['mean']:.4f} ± {s['kl']['std']:.4f}")
        if "js" in s:
            parts.append(f"JS = {s['js']['mean']:.4f}")
        if "top1_changed" in s:
            parts.append(f"top-1 changed = {s['top1_changed']['mean']:.1%}")
        if "top5_overlap" in s:
            parts.append(f"top-5 overlap = {s['top5_overlap']['mean']:.2f}")
        name = f"{label} {value}" if stats.get("group_by") else "All"
        lines.append(f"  {name}: " + ", ".join(parts))
    lines += ["", f"Analyzed {stats['positions']} positions ({len(stats['pairs'])} comparisons)"]
    if stats.get("unmatched"):
        lines.append(f"{stats['unmatched']} entries of the first dump had no match in the second")
    lines.append(bar)
    return "\n".join(lines)
