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
BARE_RULES = {
    # name: (input, output, per shard)
    "plan": (None, "plan.txt", False),
    "select": ('"plan.txt"', "shards/{s}.txt", True),
    "extract": ('"shards/{s}.txt"', "logits/{s}.txt", True),
    "dump": ('"shards/{s}.txt"', "dense/{s}.txt", True),
    "fidelity": ('"logits/{s}.txt"', "fidelity/{s}.txt", True),
    "agg": ('expand("fidelity/{s}.txt", s=SHARDS), expand("dense/{s}.txt", s=SHARDS)', "agg.txt", False),
    "extra": ('"plan.txt"', "extra/{i}.txt", False),
}
# The directives this project's standards ask of every rule: a log, a
# conda env, resources, threads; a benchmark on the heavy (per-shard compute) rules.
HEAVY = {"extract", "dump", "fidelity", "extra"}


def bare_snakefile(directives: bool = False) -> str:
    """The bare Snakefile; with `directives`, every rule also carries log, conda, resources
    and threads, and the heavy ones a benchmark: the floor those directives alone set."""
    lines = [
        'N, E = int(config["shards"]), int(config["extra"])',
        'SHARDS = [f"{i:05d}" for i in range(N)]',
        "",
        "rule all:",
        '    input: "agg.txt", expand("extra/{i}.txt", i=range(E))',
    ]
    for name, (inp, out, _) in BARE_RULES.items():
        lines += ["", f"rule {name}:"]
        if inp:
            lines.append(f"    input: {inp}")
        lines.append(f'    output: "{out}"')
        if directives:
            wc = "{i}" if name == "extra" else ("{s}" if "{s}" in out else "")
            lines += [
                f'    log: "logs/{name}/{wc or name}.log"',
                f'    conda: "{REPO / "envs" / "distill.yaml"}"',
                "    resources: mem_mb=1000, runtime=5",
                "    threads: 2",
            ]
            if name in HEAVY:
                lines.append(f'    benchmark: "benchmarks/{name}/{wc}.tsv"')
        lines.append('    shell: "touch {output}"')
    return "\n".join(lines) + "\n"


BARE_SNAKEFILE = bare_snakefile()


# The workflow's file graph without the workflow: per shard the same six jobs with the same
# inputs and outputs as the real ones (shard rows; the distillation chain's extraction and the students'
# format variant, each naming its code fingerprint, the teacher, the dataset and the shard;
# the fidelity chain's and the students' dense dumps, three files each; the fidelity job's
# dense dump, logits and code), the five list jobs over all shards, code-fingerprint jobs of 30 modules each, and every rule's
# directives, but `touch` for a command and no params: what the lineage itself costs.
MIRROR_SNAKEFILE = """N, E = int(config["shards"]), int(config["extra"])
SHARDS = [f"{i:05d}" for i in range(N)]
ENV = config["env"]
CODE_INPUTS = [f"{config['modules']}/{m}.py" for m in sorted(glob_wildcards(config["modules"] + "/{m}.py").m)[:30]]

rule all:
    input: "summary.txt", "fidelity.txt", "students.txt", expand("logits/{s}.txt", s=SHARDS), expand("extra/{i}.txt", i=range(E))

rule code:
    input: CODE_INPUTS
    output: "code/{script}.sha256"
    log: "logs/code/{script}.log"
    conda: ENV
    resources: mem_mb=200, runtime=1
    shell: "touch {output}"

rule teacher:
    output: "teacher.txt"
    log: "logs/teacher.log"
    conda: ENV
    resources: mem_mb=1000, runtime=5
    shell: "touch {output}"

rule dataset:
    output: "dataset.txt"
    log: "logs/dataset.log"
    conda: ENV
    resources: mem_mb=1000, runtime=5
    shell: "touch {output}"

rule plan:
    input: code="code/plan.sha256", teacher="teacher.txt", dataset="dataset.txt"
    output: "plan.txt"
    log: "logs/plan.log"
    conda: ENV
    resources: mem_mb=1000, runtime=5
    shell: "touch {output}"

rule select:
    input: code="code/select.sha256", plan="plan.txt"
    output: "shards/{s}.txt"
    log: "logs/select/{s}.log"
    conda: ENV
    resources: mem_mb=1000, runtime=5
    shell: "touch {output}"

rule extract:
    input: code="code/extract.sha256", teacher="teacher.txt", dataset="dataset.txt", shard="shards/{s}.txt"
    output: "logits/{s}.txt"
    log: "logs/extract/{s}.log"
    benchmark: "benchmarks/extract/{s}.tsv"
    conda: ENV
    threads: 2
    resources: mem_mb=8000, runtime=240
    shell: "touch {output}"

use rule extract as variant with:
    output: "variant/logits/{s}.txt"
    log: "logs/variant/{s}.log"
    benchmark: "benchmarks/variant/{s}.tsv"

rule dump:
    input: code="code/dump.sha256", teacher="teacher.txt", dataset="dataset.txt", shard="shards/{s}.txt"
    output: summary="dense/{s}.json", tensors="dense/{s}.safetensors", metadata="dense/{s}.metadata"
    log: "logs/dump/{s}.log"
    benchmark: "benchmarks/dump/{s}.tsv"
    conda: ENV
    threads: 2
    resources: mem_mb=8000, runtime=60
    shell: "touch {output}"

rule fidelity:
    input: code="code/fidelity.sha256", dense="dense/{s}.json", tensors="dense/{s}.safetensors", metadata="dense/{s}.metadata", logits="logits/{s}.txt"
    output: "fidelity/{s}.txt"
    log: "logs/fidelity/{s}.log"
    benchmark: "benchmarks/fidelity/{s}.tsv"
    conda: ENV
    resources: mem_mb=2000, runtime=30
    shell: "touch {output}"

use rule dump as student_dense with:
    output: summary="student/dense/{s}.json", tensors="student/dense/{s}.safetensors", metadata="student/dense/{s}.metadata"
    log: "logs/student_dense/{s}.log"
    benchmark: "benchmarks/student_dense/{s}.tsv"

LISTS = {"logits": "logits/{s}.txt", "benchmarks": "benchmarks/extract/{s}.tsv",
         "fidelity": "fidelity/{s}.txt", "variant": "variant/logits/{s}.txt",
         "student_dense": "student/dense/{s}.json"}

rule list_paths:
    input: code="code/list.sha256", files=lambda w: expand(LISTS[w.name], s=SHARDS)
    output: "lists/{name}.list"
    log: "logs/lists/{name}.log"
    conda: ENV
    resources: mem_mb=500, runtime=5
    shell: "touch {output}"

rule summary:
    input: code="code/summary.sha256", logits="lists/logits.list", benchmarks="lists/benchmarks.list"
    output: "summary.txt"
    log: "logs/summary.log"
    conda: ENV
    resources: mem_mb=4000, runtime=30
    shell: "touch {output}"

rule fidelity_report:
    input: code="code/fidelity.sha256", shards="lists/fidelity.list"
    output: "fidelity.txt"
    log: "logs/fidelity_report.log"
    conda: ENV
    resources: mem_mb=2000, runtime=10
    shell: "touch {output}"

rule students:
    input: code="code/students.sha256", logits="lists/logits.list", variant="lists/variant.list", dense="lists/student_dense.list", teacher="teacher.txt"
    output: "students.txt"
    log: "logs/students.log"
    conda: ENV
    resources: mem_mb=2000, runtime=10
    shell: "touch {output}"

rule extra:
    input: code="code/extra.sha256", plan="plan.txt"
    output: "extra/{i}.txt"
    log: "logs/extra/{i}.log"
    benchmark: "benchmarks/extra/{i}.tsv"
    conda: ENV
    resources: mem_mb=1000, runtime=5
    shell: "touch {output}"
"""
MIRROR_FIXED_JOBS = 21  # jobs besides the six per shard and the fillers (with at least one filler)


def mirror_dry_run(n_shards: int, jobs: int, workdir: Path) -> dict:
    """The mirror Snakefile with `jobs` jobs in all, dry run."""
    workdir.mkdir(parents=True, exist_ok=True)
    snakefile = workdir / "Snakefile"
    snakefile.write_text(MIRROR_SNAKEFILE)
    extra = max(jobs - 6 * n_shards - MIRROR_FIXED_JOBS, 1)
    return dry_run(n_shards, workdir, snakefile=snakefile, config=[
        f"shards={n_shards}", f"extra={extra}", f"env={REPO / 'envs' / 'distill.yaml'}",
        f"modules={REPO / 'scripts' / 'logit_lineage'}"])


def input_files(stdout: str) -> int:
    """Input files over every job of a dry run's listing (its `input:` lines)."""
    return sum(len(m.group(1).split(", ")) for m in re.finditer(r"^\s+input: (.+)$", stdout, re.M))


def bare_dry_run(n_shards: int, jobs: int, workdir: Path, directives: bool = False) -> dict:
    """The bare Snakefile with `jobs` jobs in all (4 per shard plus fillers), dry run."""
    workdir.mkdir(parents=True, exist_ok=True)
    snakefile = workdir / "Snakefile"
    snakefile.write_text(bare_snakefile(directives))
    extra = jobs - (4 * n_shards + 3)
    return dry_run(n_shards, workdir, snakefile=snakefile, config=[f"shards={n_shards}", f"extra={max(extra, 0)}"])


def run_against_bare(ctx: BenchContext, counts=(1_000, 10_000)) -> list[Result]:
    """The workflow's dry run over a bare Snakefile with the same number of jobs, per count,
    measured back to back (time and peak memory as ratios; goal ≤ 1.2× for both).

    Two more Snakefiles run in the same round, to show where the ratio goes: the bare one with
    the directives the standards ask of every rule (log, conda, resources, threads, benchmarks
    on the heavy rules), and a mirror of the workflow's file graph (the same jobs, inputs,
    outputs and directives, no params, `touch` for a command). Input files over all jobs
    (from the dry-run listing) are in the notes. Counts under 10,000 run `ctx.dryrun_repeats` rounds (medians).
    """
    out = []
    for n in counts:
        rounds = 1 if n >= 10_000 else max(1, ctx.dryrun_repeats)
        runs = {"ours": [], "bare": [], "directives": [], "mirror": []}
        for r in range(rounds):
            ctx.log(f"[bench 5b] snakemake -n with {n:,} shards: workflow, bare, bare + directives, "
                    f"mirror (round {r + 1}/{rounds})")
            ours = dry_run(n, ctx.tmp / f"ours-{n}-{r}")
            ours["inputs"] = input_files((ctx.tmp / f"ours-{n}-{r}" / "stdout.txt").read_text())
            runs["ours"].append(ours)
            for kind, directives in (("bare", False), ("directives", True)):
                wd = ctx.tmp / f"{kind}-{n}-{r}"
                res = bare_dry_run(n, ours["jobs"], wd, directives=directives)
                res["inputs"] = input_files((wd / "stdout.txt").read_text())
                runs[kind].append(res)
            wd = ctx.tmp / f"mirror-{n}-{r}"
            res = mirror_dry_run(n, ours["jobs"], wd)
            res["inputs"] = input_files((wd / "stdout.txt").read_text())
            runs["mirror"].append(res)
        med = {k: {f: median([x[f] for x in v]) for f in v[0]} for k, v in runs.items()}
        ours, bare, drc, mir = med["ours"], med["bare"], med["directives"], med["mirror"]

        def figures(m):
            return f"{m['wall']:.1f} s / {m['cpu']:.1f} s CPU, {fmt_bytes(m['maxrss'])}"

        cpu, mem = ours["cpu"] / bare["cpu"], ours["maxrss"] / bare["maxrss"]
        out.append(Result(
            BENCH, f"{n:,} shards: workflow vs bare ({ours['jobs']:,.0f} / {bare['jobs']:,.0f} jobs)",
            "wall / CPU time, peak RSS ratio", figures(ours), figures(bare),
            f"×{ours['wall'] / bare['wall']:.2f} wall, ×{cpu:.2f} CPU, ×{mem:.2f} RSS", "≤ 1.2× time and memory",
            cpu <= 1.2 and mem <= 1.2,
            f"{rounds} round(s), medians; CPU time is the time figure judged; input files over all jobs: "
            f"{ours['inputs']:,.0f} (workflow) vs {bare['inputs']:,.0f} (bare)"))
        out.append(Result(
            BENCH, f"{n:,} shards: bare + every rule's directives vs bare", "CPU time, peak RSS ratio",
            figures(drc), figures(bare),
            f"×{drc['cpu'] / bare['cpu']:.2f} CPU, ×{drc['maxrss'] / bare['maxrss']:.2f} RSS", "", None,
            "the floor set by log, conda, resources, threads and benchmark directives alone (same rounds)"))
        out.append(Result(
            BENCH, f"{n:,} shards: mirror of the workflow's files vs bare", "CPU time, peak RSS ratio",
            figures(mir), figures(bare),
            f"×{mir['cpu'] / bare['cpu']:.2f} CPU, ×{mir['maxrss'] / bare['maxrss']:.2f} RSS", "", None,
            f"the workflow's jobs, inputs, outputs and directives with no params and `touch` for a "
            f"command (MIRROR_SNAKEFILE): what the lineage itself costs; {mir['inputs']:,.0f} input files"))
        out.append(Result(
            BENCH, f"{n:,} shards: workflow vs its mirror", "CPU time, peak RSS ratio",
            figures(ours), figures(mir),
            f"×{ours['cpu'] / mir['cpu']:.2f} CPU, ×{ours['maxrss'] / mir['maxrss']:.2f} RSS", "", None,
            "what the workflow's params, commands, config and rule count cost beyond its file graph"))
    return out
