#!/usr/bin/env python
"""Tabulate, summarize and plot the student runs.

Reads the evaluation JSONs of train_student.py (one per method and seed) and writes:
  --table    CSV, one row per method and seed: held-out KL to the teacher, CE, top-1
             agreement, training time, steps, tokens (docs/STUDENT.md);
  --summary  JSON: per method the mean ± std over seeds, the gap closed,
             (KL_sft − KL_method) / (KL_sft − KL_dense), every method and format variant
             against dense paired by seed (KL difference ± standard error, z), and whether
             the goal is met (sft and topk each differ from dense by more than 3 paired
             standard errors; compressed, on main and on every format variant, closes
             ≥ 95 % of the gap and is within 3 paired standard errors of dense);
  --plot     PNG: KL to the teacher and CE per method, each seed a dot, mean ± std;
  --timings  CSV (with --timing, one timings JSON of train_student.py per evaluation): the
             wall seconds of each run's training loop, evaluation and loading.
Refuses runs of one seed that did not start from the same weights or see the same batches.
Prints the summary.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import main_guard


@click.command(help=__doc__)
@click.argument("evaluations", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--table", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV to write.")
@click.option("--summary", required=True, type=click.Path(dir_okay=False, path_type=Path), help="JSON to write.")
@click.option("--plot", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--timing", "timing_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Timings JSON of a run (train_student.py --timings; repeatable).")
@click.option("--timings", type=click.Path(dir_okay=False, path_type=Path), help="Timings CSV to write.")
@main_guard
def main(evaluations, table, summary, plot, timing_files, timings):
    from logit_lineage.common.errors import LineageError
    from logit_lineage.student.eval_file import read_eval
    from logit_lineage.student.table import (
        TABLE_COLUMNS,
        TIMING_COLUMNS,
        plot_students,
        read_timing,
        summarize,
        summary_lines,
        table_rows,
        timing_lines,
        timing_rows,
        write_csv,
        write_summary,
    )

    if bool(timing_files) != bool(timings):
        raise LineageError("--timings (the CSV to write) and --timing (the runs' timings JSONs) go together")
    rows = table_rows([(str(p), read_eval(p)) for p in evaluations])
    summ = summarize(rows)
    timed = timing_rows(rows, [(str(p), read_timing(p)) for p in timing_files]) if timings else None
    write_csv(table, TABLE_COLUMNS, rows)
    write_summary(summary, summ)
    plot_students(rows, summ, plot)
    if timed is not None:
        write_csv(timings, TIMING_COLUMNS, timed)
    for line in summary_lines(summ) + (timing_lines(timed) if timed else []):
        click.echo(line)


if __name__ == "__main__":
    main()
