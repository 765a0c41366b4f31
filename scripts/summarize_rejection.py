"""Collect per-predictor rejection results into metrics.json, a table and a plot."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from logit_lineage.common.atomic import atomic_path, write_json, write_text
from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.experts.report import plot_risk_coverage, summary_rows, table_tsv

log = logging.getLogger("logit_lineage")
REQUIRED = ("predictor", "methods")


def read_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LineageError("no such file", path=path) from None
    except json.JSONDecodeError as exc:
        raise LineageError(f"not valid JSON ({exc})", path=path) from None
    for key in REQUIRED:
        if key not in data:
            raise LineageError(f"missing key '{key}' (not an evaluate_rejection.py output?)", path=path)
    return data


@click.command(help="""Merge the outputs of evaluate_rejection.py (one per predictor, given as
arguments in display order) into OUTPUT_JSON (all curves, fits and the summary table),
OUTPUT_TSV (the table: balanced/worst-group error at 0 % rejection and AURC of Chow vs the
plug-in rules per predictor) and OUTPUT_PNG (risk-coverage curves).""")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--output-json", required=True, type=click.Path(dir_okay=False), help="Merged metrics JSON.")
@click.option("--output-tsv", required=True, type=click.Path(dir_okay=False), help="Summary table (TSV).")
@click.option("--output-png", required=True, type=click.Path(dir_okay=False), help="Risk-coverage plot (PNG).")
@main_guard
def main(results, output_json, output_tsv, output_png):
    merged = {}
    for path in map(Path, results):
        data = read_result(path)
        if data["predictor"] in merged:
            raise LineageError(f"key 'predictor' repeats '{data['predictor']}'", path=path)
        merged[data["predictor"]] = data
    rows = summary_rows(merged)
    for row in rows:
        log.info("%-12s bal.err@0 chow %.4f plug-in %.4f | AURC bal chow %.4f plug-in %.4f | AURC worst chow %.4f plug-in %.4f",
                 row["predictor"], row["bal_err_0_chow"], row["bal_err_0_plugin"], row["aurc_bal_chow"],
                 row["aurc_bal_plugin"], row["aurc_worst_chow"], row["aurc_worst_plugin"])
    with atomic_path(output_png) as tmp:
        plot_risk_coverage(merged, tmp)
    write_text(output_tsv, table_tsv(rows))
    write_json(output_json, {"summary": rows, "predictors": merged})


if __name__ == "__main__":
    main()
