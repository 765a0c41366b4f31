"""Fidelity of a shard (dense dump vs compressed records) and the aggregate over shards."""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.fidelity.fidelity import STUDENTS, headline, summarize_tokens, token_metrics
from logit_lineage.formats.dense_dump import DenseDump
from logit_lineage.formats.logits import LogitsShard


def compare_shard(dump: DenseDump, shard: LogitsShard, *, temperature: float, shard_name: str) -> dict:
    """Per-token metrics and sizes for one shard (the shard fidelity object)."""
    vocab = int(shard.params["vocab_size"])
    if dump.vocab_size != vocab:
        raise LineageError(f"dense dump vocab {dump.vocab_size} differs from the compressed shard's {vocab}",
                           path=dump.summary_path)
    row_of = {int(ix): i for i, ix in enumerate(shard.indices)}
    decoded: dict[int, object] = {}
    columns: dict[str, list] = defaultdict(list)
    for entry in tqdm(dump.iter_entries(), total=len(dump), unit="tok", desc=shard_name, mininterval=2.0):
        where = f"dense entry {entry.key} (example {entry.example_idx}, position {entry.position})"
        row = row_of.get(entry.example_idx)
        if row is None:
            raise LineageError(f"{where}: example not in the compressed shard", path=shard.path)
        if row not in decoded:
            decoded[row] = shard.example(row)
        ex = decoded[row]
        hits = np.nonzero(ex.positions == entry.position)[0]
        if len(hits) != 1:
            raise LineageError(f"{where}: the compressed record has no token at this position "
                               "(different mask options or alignment)", path=shard.path)
        j = int(hits[0])
        token = ex.token(j)
        expected_id = entry.fields.get("token_id")
        if expected_id is not None and int(expected_id) != token["token_id"]:
            raise LineageError(f"{where}: token id {expected_id} in the dump, {token['token_id']} in the record",
                               path=shard.path)
        metrics = token_metrics(entry.logits.double().numpy(), token, temperature=temperature)
        columns["example_idx"].append(entry.example_idx)
        columns["position"].append(entry.position)
        for name, value in metrics.items():
            columns[name].append(value)
    metric_cols = {k: v for k, v in columns.items() if k not in ("example_idx", "position")}
    shard_tokens = int(np.sum(shard.table.column("num_tokens").to_numpy()))
    sizes = {
        "vocab_size": vocab,
        "shard_tokens": shard_tokens,
        "compressed_file_bytes": os.path.getsize(shard.path),
        "compressed_arrow_bytes": int(shard.table.nbytes),
        "dense_entries": len(dump),
        "dense_file_bytes": os.path.getsize(dump.logits_path),
    }
    return {
        "shard": shard_name,
        "params": {"temperature": temperature, "dense_dtype": dump.dtype, "vocab_size": vocab,
                   "extraction": shard.params},
        "sizes": sizes,
        "tokens": dict(columns),
        "summary": summarize_tokens(metric_cols),
    }


def size_table(sizes: list[dict]) -> dict:
    """Bytes per token: the compressed parquet (as stored and uncompressed) vs dense bf16."""
    tokens = sum(s["shard_tokens"] for s in sizes)
    entries = sum(s["dense_entries"] for s in sizes)
    vocab = sizes[0]["vocab_size"] if sizes else 0
    comp = sum(s["compressed_file_bytes"] for s in sizes) / tokens if tokens else float("nan")
    return {
        "compressed_bytes_per_token": comp,
        "compressed_uncompressed_bytes_per_token":
            sum(s["compressed_arrow_bytes"] for s in sizes) / tokens if tokens else float("nan"),
        "dense_bf16_bytes_per_token": 2.0 * vocab,
        "dense_dump_bytes_per_token": sum(s["dense_file_bytes"] for s in sizes) / entries if entries else float("nan"),
        "dense_bf16_over_compressed": 2.0 * vocab / comp if tokens else float("nan"),
    }


def aggregate(shards: list[dict]) -> dict:
    """The report object: headline table, statistics over all tokens, and per shard."""
    if not shards:
        raise LineageError("no shard fidelity files to aggregate")
    names = [n for n in shards[0]["tokens"] if n not in ("example_idx", "position")]
    columns = {n: [v for s in shards for v in s["tokens"].get(n, [])] for n in names}
    overall = summarize_tokens(columns)
    per_shard = {s["shard"]: headline(s["summary"], size_table([s["sizes"]])) for s in shards}
    params = {k: v for k, v in shards[0]["params"].items()}
    return {
        "headline": headline(overall, size_table([s["sizes"] for s in shards])),
        "overall": overall,
        "per_shard": per_shard,
        "params": params,
    }


HEADLINE_ROWS = [
    ("tokens", "sampled tokens", "{:.0f}"),
    ("mean_nucleus_mass", "mean nucleus mass (dense p)", "{:.4f}"),
    ("mean_stored_mass", "mean stored mass (nucleus + samples)", "{:.4f}"),
    ("top1_agreement", "top-1 agreement", "{:.4f}"),
    ("top5_overlap", "top-5 overlap", "{:.4f}"),
    ("kl_mean", "KL(dense ‖ reconstruction), mean", "{:.3e}"),
    ("kl_p99", "KL(dense ‖ reconstruction), p99", "{:.3e}"),
    ("max_logit_error", "max |logit error| after dequantization", "{:.2e}"),
    ("ce_teacher_t_rel_error_mean", "CE (teacher at T) rel. error, signed mean", "{:+.2e}"),
    ("ce_teacher_t_abs_rel_error_mean", "CE (teacher at T) |rel. error|, mean", "{:.2e}"),
    ("ce_teacher_t_abs_rel_error_p99", "CE (teacher at T) |rel. error|, p99", "{:.2e}"),
    ("ce_teacher_t_nucleus_only_abs_rel_error_mean", "  nucleus-only estimate, mean", "{:.2e}"),
    ("ce_uniform_rel_error_mean", "CE (uniform) rel. error, signed mean", "{:+.2e}"),
    ("ce_uniform_abs_rel_error_mean", "CE (uniform) |rel. error|, mean", "{:.2e}"),
    ("ce_uniform_abs_rel_error_p99", "CE (uniform) |rel. error|, p99", "{:.2e}"),
    ("compressed_bytes_per_token", "compressed parquet bytes/token (zstd)", "{:.1f}"),
    ("compressed_uncompressed_bytes_per_token", "compressed columns bytes/token (in memory)", "{:.1f}"),
    ("dense_bf16_bytes_per_token", "dense bf16 bytes/token", "{:.0f}"),
    ("dense_bf16_over_compressed", "dense bf16 / compressed", "{:.1f}x"),
]


def format_headline(head: dict) -> str:
    lines = []
    for key, label, fmt in HEADLINE_ROWS:
        value = head.get(key)
        lines.append(f"{label:<46} {'n/a' if value is None else fmt.format(value)}")
    return "\n".join(lines)


def plot_report(shards: list[dict], report: dict, path, temperature: float) -> None:
    """Four panels: nucleus mass, KL, CE relative errors (both students), bytes per token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    for s in shards:
        ax.hist(np.asarray(s["tokens"]["nucleus_mass"], dtype=float), bins=30, histtype="step", label=s["shard"])
    ax.set_xlabel("dense probability mass of the stored nucleus")
    ax.set_ylabel("tokens")
    ax.set_title("mass captured by the nucleus")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    for s in shards:
        kl = np.sort(np.maximum(np.asarray(s["tokens"]["kl"], dtype=float), 1e-12))
        ax.plot(kl, np.linspace(0, 1, len(kl), endpoint=False), label=s["shard"])
    ax.set_xscale("log")
    ax.set_xlabel("KL(dense ‖ reconstruction) [nats]")
    ax.set_ylabel("fraction of tokens ≤ x")
    ax.set_title("KL per token (CDF)")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    for student, style in zip(STUDENTS, ("-", "--")):
        # The renormalized nucleus is exact for a uniform student (constant −log s): nothing to plot.
        kinds = (("", "C0"),) if student == "uniform" else (("", "C0"), ("_nucleus_only", "C3"))
        for kind, colour in kinds:
            vals = np.abs(np.concatenate([np.asarray(s["tokens"][f"ce_{student}{kind}_rel_error"], dtype=float)
                                          for s in shards]))
            vals = np.sort(np.maximum(vals[np.isfinite(vals)], 1e-12))
            label = (f"{'teacher T=' + format(temperature, 'g') if student == 'teacher_t' else 'uniform'} student, "
                     f"{'nucleus + weighted tail' if not kind else 'nucleus only'}")
            ax.plot(vals, np.linspace(0, 1, len(vals), endpoint=False), style, color=colour, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("|estimated CE − exact CE| / exact CE")
    ax.set_ylabel("fraction of tokens ≤ x")
    ax.set_title("estimated distillation loss error (CDF)")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    head = report["headline"]
    bars = {"compressed\n(parquet)": head["compressed_bytes_per_token"],
            "compressed\n(columns)": head["compressed_uncompressed_bytes_per_token"],
            "dense bf16": head["dense_bf16_bytes_per_token"]}
    ax.bar(list(bars), list(bars.values()), color=["C2", "C2", "C7"])
    for x, v in enumerate(bars.values()):
        ax.text(x, v, f"{v:.0f}", ha="center", va="bottom")
    ax.set_ylabel("bytes per token")
    ax.set_title(f"storage (vocab {report['params']['vocab_size']})")
    fig.suptitle(f"compressed logits vs dense teacher logits: {head['tokens']} sampled tokens, "
                 f"top-1 agreement {head['top1_agreement']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
