"""Summaries of the rejection evaluation: the headline table and the risk-coverage figure."""
from __future__ import annotations

METHOD_LABELS = {"chow": "Chow", "plugin_balanced": "plug-in (Alg. 1, balanced)", "plugin_worst": "plug-in (Alg. 2, worst-group)"}
TABLE_COLUMNS = (
    "predictor", "bal_err_0_chow", "bal_err_0_plugin", "worst_err_0_chow", "worst_err_0_plugin",
    "aurc_bal_chow", "aurc_bal_plugin", "aurc_worst_chow", "aurc_worst_plugin",
)


def summary_rows(results: dict) -> list[dict]:
    """One row per predictor. At 0 % rejection Chow is plain argmax eta and the balanced
    plug-in is argmax eta/alpha; AURC pairs Chow with the plug-in made for that metric."""
    rows = []
    for name, res in results.items():
        m = res["methods"]
        rows.append({
            "predictor": name,
            "bal_err_0_chow": m["chow"]["curve"][0]["balanced_error"],
            "bal_err_0_plugin": m["plugin_balanced"]["curve"][0]["balanced_error"],
            "worst_err_0_chow": m["chow"]["curve"][0]["worst_group_error"],
            "worst_err_0_plugin": m["plugin_worst"]["curve"][0]["worst_group_error"],
            "aurc_bal_chow": m["chow"]["aurc_balanced"],
            "aurc_bal_plugin": m["plugin_balanced"]["aurc_balanced"],
            "aurc_worst_chow": m["chow"]["aurc_worst"],
            "aurc_worst_plugin": m["plugin_worst"]["aurc_worst"],
        })
    return rows


def table_tsv(rows: list[dict]) -> str:
    lines = ["\t".join(TABLE_COLUMNS)]
    for row in rows:
        lines.append("\t".join([row["predictor"]] + [f"{row[c]:.4f}" for c in TABLE_COLUMNS[1:]]))
    return "\n".join(lines) + "\n"


def plot_risk_coverage(results: dict, path) -> None:
    """Rows: balanced / worst-group error among accepted; columns: predictors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), sharex=True, sharey="row", squeeze=False)
    styles = {"chow": dict(color="0.4", ls="--"), "plugin_balanced": dict(color="C0"), "plugin_worst": dict(color="C3")}
    for col, name in enumerate(names):
        methods = results[name]["methods"]
        for row, (metric, aurc_key, label) in enumerate((
            ("balanced_error", "aurc_balanced", "balanced error"),
            ("worst_group_error", "aurc_worst", "worst-group error"),
        )):
            ax = axes[row, col]
            for method, res in methods.items():
                xs = [p["rejection_rate"] for p in res["curve"]]
                ys = [p[metric] for p in res["curve"]]
                ax.plot(xs, ys, marker=".", ms=3, lw=1.3, label=f"{METHOD_LABELS[method]} ({res[aurc_key]:.3f})", **styles[method])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, title="AURC", title_fontsize=6)
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(f"{label} among accepted")
            if row == 1:
                ax.set_xlabel("rejection rate")
    fig.suptitle("Risk-coverage on test (rejectors fitted on val)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
