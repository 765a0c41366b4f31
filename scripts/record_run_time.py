#!/usr/bin/env python
"""Record one measured workflow run in docs/run_times.json (the figures the docs quote).

Give the run's results folder (its benchmarks/ are summed), the snakemake output of the
run (for its job count) and the wall time measured around it; the machine, its load, the
date and the commit are stated, not guessed. The docs that quote the run are listed with
--documented-in; `stale_documents` (and its test) then fail until each quotes the new
sentence, printed here.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from logit_lineage.common.atomic import write_text
from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.run_times import jobs_from_log, run_time_phrase, sum_benchmarks


@click.command(help=__doc__)
@click.option("--name", required=True, help="Run name, e.g. default or smollm2.")
@click.option("--results", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="The run's results folder.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="snakemake's output of the run.")
@click.option("--wall-seconds", type=click.FloatRange(min=0), required=True, help="Wall time of the run.")
@click.option("--machine", required=True, help="e.g. '2 CPU cores (Intel Xeon), no GPU'.")
@click.option("--load", required=True, help="e.g. 'loaded: load average 6-9, other work running'.")
@click.option("--date", required=True, help="YYYY-MM-DD.")
@click.option("--commit", required=True, help="Short commit id of the code that ran.")
@click.option("--command", "run_command", required=True, help="The command that was timed.")
@click.option("--documented-in", multiple=True, help="A document that quotes this run (repeatable).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/run_times.json"),
              show_default=True, help="Records file to update.")
@main_guard
def main(name, results, log_file, wall_seconds, machine, load, date, commit, run_command, documented_in, output):
    records = json.loads(output.read_text()) if output.exists() else {}
    record = {"command": run_command, "jobs": jobs_from_log(log_file.read_text(errors="replace")),
              "wall_s": round(wall_seconds, 1), **sum_benchmarks(results), "machine": machine, "load": load,
              "date": date, "commit": commit, "documented_in": list(documented_in)}
    records[name] = record
    write_text(output, json.dumps(records, indent=2, sort_keys=True) + "\n")
    log.info("%s: %s", name, run_time_phrase(record))
    click.echo(run_time_phrase(record))


if __name__ == "__main__":
    main()
