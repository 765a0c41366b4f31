"""The distillation chain at a glance: tokens, throughput, bytes per token and what the records hold.

One pass over every shard (`LogitsShard`) accumulates, per shard, the kept
tokens, the nucleus-size histogram, the nucleus and stored probability mass
(nucleus + tail samples, from the stored logits and logsumexp) in fixed bins,
and pairs it with the file's size and the extraction job's seconds (the
`s` column of the rule's benchmark TSV). Histograms with fixed bins merge
across shards exactly, so memory does not grow with the number of tokens.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.logits import LogitsShard

MASS_BINS = 1000  # equal bins over [0, 1] for the nucleus and stored mass
FORMAT = "logit_lineage.distill_summary/1"


@dataclass
class ShardAccumulator:
    """What one shard contributes (histograms in fixed bins, sums)."""

    name: str
    cap: int
    top_p: float
    examples: int = 0
    tokens: int = 0
    sampled: int = 0
    nucleus_sizes: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    nucleus_mass: np.ndarray = field(default_factory=lambda: np.zeros(MASS_BINS, np.int64))
    stored_mass: np.ndarray = field(default_factory=lambda: np.zeros(MASS_BINS, np.int64))
    nucleus_mass_sum: float = 0.0
    stored_mass_sum: float = 0.0
    nucleus_mass_min: float = math.inf
    stored_mass_min: float = math.inf

    def add(self, ex) -> None:
        self.examples += 1
        n = ex.num_tokens
        if n == 0:
            return
        self.tokens += n
        self.sampled += int(ex.sampled_counts.sum())
        nucleus = _per_token_mass(ex.top_logits, ex.top_counts, ex.logsumexp)
        stored = nucleus + _per_token_mass(ex.sampled_logits, ex.sampled_counts, ex.logsumexp)
        self.nucleus_sizes += np.bincount(ex.top_counts, minlength=256)[:256]
        self.nucleus_mass += _mass_hist(nucleus)
        self.stored_mass += _mass_hist(stored)
        self.nucleus_mass_sum += float(nucleus.sum())
        self.stored_mass_sum += float(stored.sum())
        self.nucleus_mass_min = min(self.nucleus_mass_min, float(nucleus.min()))
        self.stored_mass_min = min(self.stored_mass_min, float(stored.min()))


def _per_token_mass(logits: np.ndarray, counts: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """Σ p over each token's stored entries (0 for a token with none)."""
    probs = np.exp(logits - np.repeat(lse, counts))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sums = np.add.reduceat(probs, offsets[:-1]) if probs.size else np.zeros(len(counts))
    return np.where(counts > 0, sums, 0.0)


def _mass_hist(mass: np.ndarray) -> np.ndarray:
    idx = np.clip((np.clip(mass, 0.0, 1.0) * MASS_BINS).astype(np.int64), 0, MASS_BINS - 1)
    return np.bincount(idx, minlength=MASS_BINS)


def read_benchmark_seconds(path: str | Path) -> float:
    """Mean `s` (wall seconds) of a snakemake benchmark TSV."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise LineageError(f"cannot read benchmark ({exc.strerror})", path=path) from None
    try:
        seconds = [float(r["s"]) for r in rows]
    except (KeyError, TypeError, ValueError):
        raise LineageError("not a snakemake benchmark TSV (expected a numeric 's' column)", path=path) from None
    if not seconds:
        raise LineageError("benchmark TSV has no rows", path=path)
    return float(np.mean(seconds))


def _quantile_from_hist(hist: np.ndarray, q: float, width: float = 1.0 / MASS_BINS) -> float | None:
    """Upper edge of the bin holding quantile q (None without data)."""
    total = hist.sum()
    if total == 0:
        return None
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    return min(1.0, (k + 1) * width)


def _size_quantile(hist: np.ndarray, q: float) -> int | None:
    total = hist.sum()
    if total == 0:
        return None
    return int(np.searchsorted(np.cumsum(hist), q * total, side="left"))


def _figures(acc: ShardAccumulator, file_bytes: int, seconds: float | None) -> dict:
    sizes = acc.nucleus_sizes
    tokens = acc.tokens
    return {
        "examples": acc.examples,
        "tokens": tokens,
        "file_bytes": file_bytes,
        "bytes_per_token": file_bytes / tokens if tokens else None,
        "extract_seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds and tokens else None,
        "nucleus_size_mean": float((np.arange(256) * sizes).sum() / tokens) if tokens else None,
        "nucleus_size_median": _size_quantile(sizes, 0.5),
        "nucleus_size_p99": _size_quantile(sizes, 0.99),
        "capped_fraction": float(sizes[acc.cap:].sum() / tokens) if tokens else None,
        "sampled_per_token": acc.sampled / tokens if tokens else None,
        "nucleus_mass_mean": acc.nucleus_mass_sum / tokens if tokens else None,
        "nucleus_mass_min": acc.nucleus_mass_min if tokens else None,
        "nucleus_mass_p01": _quantile_from_hist(acc.nucleus_mass, 0.01),
        "stored_mass_mean": acc.stored_mass_sum / tokens if tokens else None,
        "stored_mass_min": acc.stored_mass_min if tokens else None,
        "stored_mass_p01": _quantile_from_hist(acc.stored_mass, 0.01),
    }


def summarize(shards: list[str | Path], benchmarks: dict[str, str | Path] | None = None) -> dict:
    """The summary of the distillation chain over `shards` (logits parquets). `benchmarks` maps a shard's
    file stem (shard-00003) to its extraction benchmark TSV; shards without one get no rate."""
    benchmarks = benchmarks or {}
    per_shard, total = {}, None
    params_seen = None
    for path in tqdm(shards, desc="summarize", unit="shard", mininterval=2.0):
        path = Path(path)
        shard = LogitsShard(path)
        params = shard.params
        key = {k: params.get(k) for k in ("top_p", "top_p_max_elements", "sampled_n", "vocab_size")}
        if params_seen is None:
            params_seen = dict(params)
            total = ShardAccumulator("all", int(params["top_p_max_elements"]), float(params["top_p"]))
        elif {k: params_seen.get(k) for k in key} != key:
            raise LineageError(f"extraction parameters {key} differ from the first shard's", path=path)
        acc = ShardAccumulator(path.stem, int(params["top_p_max_elements"]), float(params["top_p"]))
        for ex in shard:
            acc.add(ex)
        bench = benchmarks.get(path.stem)
        seconds = read_benchmark_seconds(bench) if bench is not None else None
        per_shard[path.stem] = {"path": str(path), **_figures(acc, path.stat().st_size, seconds),
                                "nucleus_size_histogram": _sparse(acc.nucleus_sizes)}
        _merge(total, acc)
    if total is None:
        raise LineageError("no shards to summarize")
    file_bytes = sum(s["file_bytes"] for s in per_shard.values())
    timed = [s for s in per_shard.values() if s["extract_seconds"] is not None]
    seconds = sum(s["extract_seconds"] for s in timed) if len(timed) == len(per_shard) else None
    overall = _figures(total, file_bytes, seconds)
    overall["shards"] = len(per_shard)
    return {
        "format": FORMAT,
        "params": {k: params_seen.get(k) for k in ("teacher", "dataset", "top_p", "top_p_max_elements", "sampled_n",
                                                    "vocab_size", "dtype", "exclude_eot", "exclude_think")},
        "overall": overall,
        "shards": per_shard,
        "histograms": {
            "nucleus_size": _sparse(total.nucleus_sizes),
            "mass_bins": MASS_BINS,
            "nucleus_mass": _sparse(total.nucleus_mass),
            "stored_mass": _sparse(total.stored_mass),
        },
        "notes": {
            "tokens_per_s": "kept tokens / extraction job wall seconds (benchmark TSV column s: model load "
                            "included; the last run only, for a shard that was resumed)",
            "bytes_per_token": "logits parquet file bytes / kept tokens",
            "mass": "nucleus mass = Σ p over the nucleus, stored mass = nucleus + tail samples, from the "
                    "stored (dequantized) logits and logsumexp; histograms in equal bins over [0, 1]",
        },
    }


def _merge(total: ShardAccumulator, acc: ShardAccumulator) -> None:
    total.examples += acc.examples
    total.tokens += acc.tokens
    total.sampled += acc.sampled
    total.nucleus_sizes += acc.nucleus_sizes
    total.nucleus_mass += acc.nucleus_mass
    total.stored_mass += acc.stored_mass
    total.nucleus_mass_sum += acc.nucleus_mass_sum
    total.stored_mass_sum += acc.stored_mass_sum
    total.nucleus_mass_min = min(total.nucleus_mass_min, acc.nucleus_mass_min)
    total.stored_mass_min = min(total.stored_mass_min, acc.stored_mass_min)


def _sparse(hist: np.ndarray) -> dict[str, int]:
    return {str(int(i)): int(hist[i]) for i in np.nonzero(hist)[0]}


def dense_hist(sparse: dict[str, int], size: int) -> np.ndarray:
    out = np.zeros(size, np.int64)
    for k, v in sparse.items():
        out[int(k)] = v
    return out


def format_summary(summary: dict) -> str:
    """A few lines for the log."""
    o = summary["overall"]

    def f(x, spec):
        return "n/a" if x is None else format(x, spec)

    return (f"{o['shards']} shards, {o['examples']} examples, {o['tokens']:,} kept tokens; "
            f"{f(o['tokens_per_s'], '.1f')} tok/s; {f(o['bytes_per_token'], '.1f')} B/token; nucleus size mean "
            f"{f(o['nucleus_size_mean'], '.1f')} median {o['nucleus_size_median']}, capped {f(o['capped_fraction'], '.1%')}; "
            f"stored mass mean {f(o['stored_mass_mean'], '.4f')}")


def plot_nucleus(summary: dict, path) -> None:
    """Nucleus-size histogram over all tokens (cap marked) and the capped fraction per shard."""
    plt = _pyplot()
    cap = int(summary["params"]["top_p_max_elements"])
    hist = dense_hist(summary["histograms"]["nucleus_size"], 256)[: cap + 1]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax.bar(np.arange(len(hist)), hist, width=1.0, color="#4477aa")
    ax.axvline(cap, color="#cc3311", linestyle="--", label=f"cap {cap}")
    capped = summary["overall"]["capped_fraction"]
    ax.set_title(f"nucleus size (top_p {summary['params']['top_p']}), {summary['overall']['tokens']:,} tokens; "
                 f"capped {capped:.1%}" if capped is not None else "nucleus size")
    ax.set_xlabel("tokens in the nucleus")
    ax.set_ylabel("kept tokens")
    ax.legend()
    names = list(summary["shards"])
    fractions = [summary["shards"][n]["capped_fraction"] or 0.0 for n in names]
    bx.bar(range(len(names)), fractions, color="#cc3311")
    bx.set_xticks(range(len(names)), [n.removeprefix("shard-") for n in names], rotation=90, fontsize=7)
    bx.set_ylabel("fraction of tokens at the cap")
    bx.set_title("capped fraction per shard")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mass(summary: dict, path) -> None:
    """Distribution of the nucleus and stored probability mass per token (histogram and CDF)."""
    plt = _pyplot()
    bins = int(summary["histograms"]["mass_bins"])
    edges = np.arange(bins + 1) / bins
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    lo = 1.0
    for key, colour in (("nucleus_mass", "#4477aa"), ("stored_mass", "#228833")):
        hist = dense_hist(summary["histograms"][key], bins)
        if hist.sum() == 0:
            continue
        lo = min(lo, edges[np.nonzero(hist)[0][0]])
        ax.stairs(hist, edges, color=colour, label=key.replace("_", " "))
        bx.plot(edges[1:], np.cumsum(hist) / hist.sum(), color=colour, label=key.replace("_", " "))
    top_p = float(summary["params"]["top_p"])
    for a in (ax, bx):
        a.axvline(top_p, color="#cc3311", linestyle="--", label=f"top_p {top_p}")
        a.set_xlim(max(0.0, lo - 0.01), 1.0)
        a.set_xlabel("probability mass per token")
        a.legend()
    ax.set_yscale("log")
    ax.set_ylabel("kept tokens")
    ax.set_title("stored mass per token")
    bx.set_ylabel("fraction of tokens ≤ x")
    bx.set_title("cumulative")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_shards(summary: dict, path) -> None:
    """Per shard: kept tokens per second of the extraction job, and bytes per token."""
    plt = _pyplot()
    names = list(summary["shards"])
    shards = summary["shards"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(names))
    labels = [n.removeprefix("shard-") for n in names]
    rates = [shards[n]["tokens_per_s"] or 0.0 for n in names]
    ax.bar(x, rates, color="#4477aa")
    overall = summary["overall"]["tokens_per_s"]
    if overall:
        ax.axhline(overall, color="#222222", linestyle="--", label=f"all shards {overall:.1f}")
        ax.legend()
    ax.set_title("extraction: kept tokens / job second")
    ax.set_ylabel("tokens/s")
    bpt = [shards[n]["bytes_per_token"] or 0.0 for n in names]
    bx.bar(x, bpt, color="#228833")
    if summary["overall"]["bytes_per_token"]:
        bx.axhline(summary["overall"]["bytes_per_token"], color="#222222", linestyle="--",
                   label=f"all shards {summary['overall']['bytes_per_token']:.1f}")
        bx.legend()
    bx.set_title("parquet bytes per kept token")
    bx.set_ylabel("bytes/token")
    for a in (ax, bx):
        a.set_xticks(x, labels, rotation=90, fontsize=7)
        a.set_xlabel("shard")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
