"""Benchmark 5: `snakemake -n` on the repo's Snakefile as the shard count grows.

Each run: `snakemake -n -s Snakefile -d <empty tmp dir> --configfile overlay.yaml`
with the overlay setting `distill.n_shards` (every other key at its default),
stdout to a file (the terminal's speed is not measured). Measured per run:
wall time; CPU time (user + sys of snakemake and its children, from GNU time:
far less sensitive than wall time to other load on a shared machine); peak RSS
(GNU time's %M: the largest resident set of snakemake or any child, exact, not
sampled); and, when psutil is there, the peak of the whole process tree's summed
RSS sampled every 50 ms. Counts run small → large, twice (the 10,000-shard
count once: minutes on a small machine); each figure is the median of its runs.

"About linear": the marginal cost per added shard between the two largest counts
is at most twice that between the two smallest (a quadratic DAG build would
give ~10× for 100 → 1,000 → 10,000).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchlib import REPO, Result, fmt_bytes, median
from context import BenchContext

BENCH = "5 snakemake -n"


def _tree_rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(pid)
        while not stop.is_set():
            total = 0
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            stop.wait(0.05)
    except psutil.Error:
        return


GNU_TIME = Path("/usr/bin/time")


def dry_run(n_shards: int, workdir: Path, snakefile: Path | None = None, config: list[str] | None = None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-n", "-s", str(snakefile or REPO / "Snakefile"), "-d", str(workdir)]
    if config is None:
        overlay = workdir / "overlay.yaml"
        overlay.write_text(f"distill:\n  n_shards: {n_shards}\n")
        cmd += ["--configfile", str(overlay)]
    else:
        cmd += ["--config", *config]
    timing = workdir / "time.txt"
    if GNU_TIME.exists():
        # A small parent: a child forked from this (large) process would report our RSS as its peak.
        cmd = [str(GNU_TIME), "-f", "%e %U %S %M", "-o", str(timing), *cmd]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out_path = workdir / "stdout.txt"
    with open(out_path, "w") as out, open(workdir / "stderr.txt", "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        stop, tree_peak = threading.Event(), [0]
        sampler = threading.Thread(target=_tree_rss_sampler, args=(proc.pid, stop, tree_peak), daemon=True)
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake -n with {n_shards} shards failed ({proc.returncode}): "
                           f"{(workdir / 'stderr.txt').read_text()[-2000:]}")
    if timing.exists():
        _, user, system, maxrss_kb = timing.read_text().split()[-4:]
        cpu, peak = float(user) + float(system), int(maxrss_kb) * 1024
    else:
        cpu, peak = float("nan"), tree_peak[0]
    jobs = re.search(r"^total\s+(\d+)\s*$", out_path.read_text(), re.M)
    return {"wall": wall, "cpu": cpu, "maxrss": peak, "tree_peak": tree_peak[0],
            "jobs": int(jobs.group(1)) if jobs else -1}


def marginal_ratio(ns, ys) -> float:
    """Per-shard cost between the two largest counts over that between the two smallest."""
    low = (ys[1] - ys[0]) / (ns[1] - ns[0])
    high = (ys[-1] - ys[-2]) / (ns[-1] - ns[-2])
    return high / low if low > 0 else float("inf")


def run(ctx: BenchContext) -> list[Result]:
    ns = sorted(ctx.shard_counts)
    runs: dict[int, list[dict]] = {n: [] for n in ns}
    for rep in range(ctx.dryrun_repeats):
        for n in ns:
            if rep > 0 and n >= 10_000:
                continue  # once: a 10k-shard DAG takes minutes on a small machine
            ctx.log(f"[bench 5] snakemake -n with {n:,} shards (round {rep + 1})")
            runs[n].append(dry_run(n, ctx.tmp / f"dryrun-{n}-{rep}"))
    med = {n: {k: median([r[k] for r in rs]) for k in rs[0]} for n, rs in runs.items()}
    out = []
    for n in ns:
        m = med[n]
        out.append(Result(BENCH, f"{n:,} shards ({m['jobs']:,.0f} jobs)", "wall / CPU time, peak RSS",
                          f"{m['wall']:.1f} s / {m['cpu']:.1f} s CPU, {fmt_bytes(m['maxrss'])}", "", "", "", None,
                          f"{len(runs[n])} run(s); process-tree RSS peak (sampled) {fmt_bytes(m['tree_peak'])}; "
                          f"{1000 * m['cpu'] / max(m['jobs'], 1):.1f} ms CPU per job"))
    if len(ns) >= 3:
        cpu_ratio = marginal_ratio(ns, [med[n]["cpu"] for n in ns])
        mem_ratio = marginal_ratio(ns, [med[n]["maxrss"] for n in ns])
        lo, hi = ns[-2], ns[-1]
        out.append(Result(
            BENCH, f"{lo:,} → {hi:,} shards", "growth (CPU time, peak RSS)",
            f"×{med[hi]['cpu'] / med[lo]['cpu']:.1f} CPU, ×{med[hi]['maxrss'] / med[lo]['maxrss']:.1f} RSS",
            f"×{hi / lo:.0f} shards", f"marginal cost ratio {cpu_ratio:.2f} (CPU), {mem_ratio:.2f} (RSS)",
            "about linear (ratio ≤ 2)", cpu_ratio <= 2.0 and mem_ratio <= 2.0,
            f"marginal per-shard cost {ns[-2]:,}→{ns[-1]:,} over {ns[0]:,}→{ns[1]:,}; 1.0 = exactly linear"))
    return out


# A bare Snakefile with as many jobs as the workflow's DAG at the same shard count, each
# job naming one input file: what snakemake itself costs, so the workflow's own share
# (inputs per job, input functions, config handling) shows as a ratio measured side by side.
BARE_SNAKEFILE = '''
N, E = int(config["shards"]), int(config["extra"])
SHARDS = [f"{i:05d}" for i in range(N)]

rule all:
    input: "agg.txt", expand("extra/{i}.txt", i=range(E))

rule plan:
    output: "plan.txt"
    shell: "touch {output}"

rule select:
    input: "plan.txt"
    output: "shards/{s}.txt"
    shell: "touch {output}"

rule extract:
    input: "shards/{s}.txt"
    output: "logits/{s}.txt"
    shell: "touch {output}"

rule dump:
    input: "shards/{s}.txt"
    output: "dense/{s}.txt"
    shell: "touch {output}"

rule fidelity:
    input: "logits/{s}.txt"
    output: "fidelity/{s}.txt"
    shell: "touch {output}"

rule agg:
    input: expand("fidelity/{s}.txt", s=SHARDS), expand("dense/{s}.txt", s=SHARDS)
    output: "agg.txt"
    shell: "touch {output}"

rule extra:
    input: "plan.txt"
    output: "extra/{i}.txt"
    shell: "touch {output}"
'''


def bare_dry_run(n_shards: int, jobs: int, workdir: Path) -> dict:
    """The bare Snakefile with `jobs` jobs in all (4 per shard plus fillers), dry run."""
    workdir.mkdir(parents=True, exist_ok=True)
    snakefile = workdir / "Snakefile"
    snakefile.write_text(BARE_SNAKEFILE)
    extra = jobs - (4 * n_shards + 3)
    return dry_run(n_shards, workdir, snakefile=snakefile, config=[f"shards={n_shards}", f"extra={max(extra, 0)}"])


def run_against_bare(ctx: BenchContext, counts=(1_000, 10_000)) -> list[Result]:
    """The workflow's dry run over a bare Snakefile with the same number of jobs, per count,
    measured back to back (time and peak memory as ratios; goal ≤ 1.2× for both)."""
    out = []
    for n in counts:
        ctx.log(f"[bench 5] snakemake -n with {n:,} shards: workflow, then a bare Snakefile")
        ours = dry_run(n, ctx.tmp / f"ours-{n}")
        bare = bare_dry_run(n, ours["jobs"], ctx.tmp / f"bare-{n}")
        wall, cpu, mem = ours["wall"] / bare["wall"], ours["cpu"] / bare["cpu"], ours["maxrss"] / bare["maxrss"]
        out.append(Result(
            BENCH, f"{n:,} shards: workflow vs bare ({ours['jobs']:,} / {bare['jobs']:,} jobs)",
            "wall / CPU time, peak RSS ratio",
            f"{ours['wall']:.1f} s / {ours['cpu']:.1f} s CPU, {fmt_bytes(ours['maxrss'])}",
            f"{bare['wall']:.1f} s / {bare['cpu']:.1f} s CPU, {fmt_bytes(bare['maxrss'])}",
            f"×{wall:.2f} wall, ×{cpu:.2f} CPU, ×{mem:.2f} RSS", "≤ 1.2× time and memory",
            cpu <= 1.2 and mem <= 1.2, "one run each, back to back; CPU time is the time figure judged"))
    return out
