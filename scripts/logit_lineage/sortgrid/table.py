"""The grid table: evaluation records -> per-checkpoint rows, per-configuration summary, plot."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError

CONFIG_KEYS = ("layernorm", "regime", "train_max_k", "train_min_k", "n_layers", "use_mlp", "length_mode")


def table_rows(records: list[tuple[str, dict]]) -> tuple[list[dict], list[int]]:
    """Rows of sort_grid_table.csv (ordered by configuration, seed, iteration) and the test Ks."""
    rows = []
    ks: set[int] | None = None
    for path, rec in records:
        if rec["run"] is None or rec["name"] is None:
            raise LineageError("not a grid checkpoint (its path is outside the grid tree)", path=path)
        record_ks = {int(r["k"]) for r in rec["per_k"]}
        if ks is None:
            ks = record_ks
        elif record_ks != ks:
            raise LineageError(f"test lengths {sorted(record_ks)} differ from the other files' {sorted(ks)}", path=path)
        run, name = rec["run"], rec["name"]
        row = {
            "layernorm": run["layernorm"], "regime": run["regime"], "group": run["group"],
            "task_id": run["task_id"], "seed": run["seed"], "prefix": name["prefix"],
            "iters": rec["iters_done"], "n_layers": name["n_layers"], "use_mlp": name["use_mlp"],
            "length_mode": name["length_mode"], "train_min_k": name["train_min_k"],
            "train_max_k": name["train_max_k"], "test_min_k": min(record_ks),
            "test_max_k": max(record_ks), "mean_exact_match": float(rec["mean_exact_match"]),
            "mean_token_accuracy": float(rec["mean_token_accuracy"]), "checkpoint": rec["checkpoint"],
        }
        for r in rec["per_k"]:
            row[f"exact_k{r['k']}"] = float(r["exact_match"])
            row[f"token_k{r['k']}"] = float(r["token_accuracy"])
        rows.append(row)
    if not rows:
        raise LineageError("no evaluation files to tabulate")
    rows.sort(key=lambda r: (not r["layernorm"], r["regime"], r["train_max_k"], r["task_id"], r["seed"], r["iters"]))
    return rows, sorted(ks or ())


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summary_rows(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in CONFIG_KEYS) + (row["prefix"], row["iters"])].append(row)
    out = []
    for key, members in groups.items():
        em = [m["mean_exact_match"] for m in members]
        ta = [m["mean_token_accuracy"] for m in members]
        out.append({
            **dict(zip(CONFIG_KEYS, key)), "prefix": key[-2], "iters": key[-1],
            "n_seeds": len(members),
            "exact_match_mean": statistics.fmean(em), "exact_match_std": _std(em),
            "token_accuracy_mean": statistics.fmean(ta), "token_accuracy_std": _std(ta),
        })
    out.sort(key=lambda r: (not r["layernorm"], r["regime"], r["n_layers"], r["use_mlp"], r["length_mode"], r["train_max_k"], r["iters"]))
    return out


def config_label(row: dict) -> str:
    regime = "fixed" if row["regime"] == "fixed" else f"dynamic {row['length_mode']}"
    return (f"L{row['n_layers']} {'MLP' if row['use_mlp'] else 'attn-only'} "
            f"{'LN' if row['layernorm'] else 'no-LN'} {regime}")


def _latest(rows: list[dict]) -> list[dict]:
    """Per configuration, the rows of its last checkpoint (Final if any): what the plot shows."""
    best: dict[tuple, tuple] = {}
    for r in rows:
        key = tuple(r[k] for k in CONFIG_KEYS)
        rank = (r["prefix"] == "Final", r["iters"])
        best[key] = max(best.get(key, rank), rank)
    return [r for r in rows if (r["prefix"] == "Final", r["iters"]) == best[tuple(r[k] for k in CONFIG_KEYS)]]


def plot_grid(rows: list[dict], summary: list[dict], ks: list[int], path: str | Path) -> None:
    """Left: mean exact match on the test Ks vs training max K (Final checkpoints, mean ±
    std over seeds). Right: exact match per test K for each configuration and train K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    finals = _latest(summary)
    lines: dict[str, list[dict]] = defaultdict(list)
    for s in finals:
        lines[config_label(s)].append(s)
    fig, (ax_line, ax_heat) = plt.subplots(1, 2, figsize=(13, 0.35 * max(8, len(finals)) + 2))
    for label, pts in sorted(lines.items()):
        pts.sort(key=lambda s: s["train_max_k"])
        xs = [p["train_max_k"] for p in pts]
        bars = ax_line.errorbar(xs, [p["exact_match_mean"] for p in pts],
                                yerr=[p["exact_match_std"] for p in pts], marker="o", capsize=3, label=label)
        # Token accuracy, dashed in the same colour: short runs learn tokens long before whole sequences.
        ax_line.plot(xs, [p["token_accuracy_mean"] for p in pts], linestyle="--", marker="x",
                     color=bars.lines[0].get_color(), alpha=0.6)
    ax_line.plot([], [], "k--x", alpha=0.6, label="(dashed: token accuracy)")
    ax_line.set_xticks(sorted({s["train_max_k"] for s in finals}))
    ax_line.set_xlabel("training max K")
    ax_line.set_ylabel(f"exact match (solid), token accuracy (dashed), mean over K={ks[0]}..{ks[-1]}", fontsize=8)
    ax_line.set_ylim(-0.02, 1.02)
    ax_line.grid(alpha=0.3)
    ax_line.legend(fontsize=7, loc="best")
    ax_line.set_title("Length generalization (Final checkpoints)")

    final_rows = _latest(rows)
    cells: dict[str, list[list[float]]] = defaultdict(list)
    for r in final_rows:
        cells[f"{config_label(r)} K≤{r['train_max_k']}"].append([r[f"exact_k{k}"] for k in ks])
    labels = sorted(cells)
    matrix = np.array([np.mean(cells[lab], axis=0) for lab in labels])
    im = ax_heat.imshow(matrix, aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax_heat.set_xticks(range(len(ks)), [str(k) for k in ks], fontsize=7)
    ax_heat.set_yticks(range(len(labels)), labels, fontsize=7)
    ax_heat.set_xlabel("test K")
    ax_heat.set_title("Exact match per test length (mean over seeds)")
    fig.colorbar(im, ax=ax_heat, fraction=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
