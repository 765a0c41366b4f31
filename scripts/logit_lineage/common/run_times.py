"""Documented run times, kept equal to the last measurement.

A run time in the docs goes stale the moment a rule gets slower. Each documented run
(the default DAG, the SmolLM2 config) has one record in docs/run_times.json, written by
scripts/record_run_time.py from the run itself: wall time, the CPU seconds and wall seconds
its jobs' snakemake benchmark files add up to, the number of jobs, the machine and its load,
the commit and the date. `run_time_phrase` renders a record as the sentence the docs quote
word for word; `stale_documents` lists every document whose sentence no longer matches its
record, which a test turns into a failure.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from logit_lineage.common.errors import LineageError

RECORD_FILE = "docs/run_times.json"


def sum_benchmarks(results: str | Path) -> dict:
    """CPU and wall seconds over every snakemake benchmark file under `results`/benchmarks."""
    files = sorted(Path(results, "benchmarks").rglob("*.tsv"))
    cpu = wall = 0.0
    for path in files:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "cpu_time" not in rows[0] or "s" not in rows[0]:
            raise LineageError("not a snakemake benchmark file (no 's' / 'cpu_time' column)", path=path)
        last = rows[-1]  # a rerun appends nothing: snakemake rewrites the file, one row per repeat
        try:
            cpu += float(last["cpu_time"])
            wall += float(last["s"])
        except ValueError:
            raise LineageError(f"row 1: 's' = {last['s']!r}, 'cpu_time' = {last['cpu_time']!r} are not numbers",
                               path=path) from None
    return {"benchmark_files": len(files), "benchmark_cpu_s": round(cpu, 1), "benchmark_wall_s": round(wall, 1)}


def jobs_from_log(text: str) -> int:
    """The job count of a finished snakemake run, from its '<n> of <n> steps (100%) done' line."""
    found = re.findall(r"(\d+) of (\d+) steps \(100%\) done", text)
    if not found:
        raise LineageError("the snakemake log has no 'N of N steps (100%) done' line: the run did not finish")
    return int(found[-1][1])


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def run_time_phrase(record: dict) -> str:
    """The sentence the docs quote for one record."""
    return (f"{minutes(record['wall_s'])} wall for its {record['jobs']} jobs on {record['machine']} "
            f"({record['load']}; the {record['benchmark_files']} jobs with benchmark files used "
            f"{minutes(record['benchmark_cpu_s'])} of CPU), "
            f"measured {record['date']} at commit {record['commit']}")


def load_records(repo: str | Path) -> dict:
    path = Path(repo, RECORD_FILE)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LineageError(f"cannot read run times ({exc})", path=path) from None


def stale_documents(repo: str | Path) -> list[str]:
    """'<doc>: <run>' for each document that does not quote its run's current sentence."""
    out = []
    for name, record in load_records(repo).items():
        phrase = run_time_phrase(record)
        for doc in record.get("documented_in", []):
            text = " ".join(Path(repo, doc).read_text().split()).replace("# ", "")
            if phrase not in text:
                out.append(f"{doc}: run '{name}' should say: {phrase}")
    return out
