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


def dry_run(n_shards: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "overlay.yaml"
    overlay.write_text(f"distill:\n  n_shards: {n_shards}\n")
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-n", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(overlay)]
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
