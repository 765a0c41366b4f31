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
    # The SLURM executor plugin runs `scontrol show config` when snakemake starts; where the
    # SLURM client is installed but no controller answers, that waits 9 s of wall time (no
    # CPU) in every run alike. An empty SLURM config makes it fail at once, so wall time
    # measures the dry run (a login node with a live controller answers in milliseconds).
    if "SLURM_CONF" not in os.environ:
        empty = workdir / "empty-slurm.conf"
        empty.write_text("")
        env["SLURM_CONF"] = str(empty)
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


# --- 5b: the workflow's dry run against bare Snakefiles -------------------------------------------
#
# A dry run's listing names every job's rule, inputs, outputs and wildcards. A job is per
# shard when it has a shard wildcard (`shard` in the workflow, `s` in the Snakefiles below);
# the workflow's own listing at the measured count says which rules those are, how many
# jobs of each there are per shard, and how many inputs each names, so the bare Snakefiles
# are built from it and follow the DAG when it changes.
SHARD_WILDCARDS = ("shard", "s")


def parse_listing(stdout: str) -> list[dict]:
    """The jobs of a dry run's listing: rule, inputs, outputs, wildcards, benchmark file (or None)."""
    jobs, job = [], None
    for line in stdout.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\S+):$", line)
        if m:
            job = {"rule": m.group(1), "input": [], "output": [], "wildcards": {}, "benchmark": None}
            jobs.append(job)
            continue
        if job is None or not line.startswith("    "):
            if not line.strip() or line.startswith("["):
                continue
            job = None
            continue
        key, _, value = line.strip().partition(": ")
        if key in ("input", "output"):
            job[key] = value.split(", ")
        elif key == "wildcards":
            job["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        elif key == "benchmark":
            job["benchmark"] = value
    return jobs


def _is_shard_job(job: dict) -> bool:
    return any(w in job["wildcards"] for w in SHARD_WILDCARDS)


def _produced(jobs: list[dict]) -> set[str]:
    """The files these jobs write: outputs and benchmark files (a list job may gather either)."""
    return {f for j in jobs for f in (*j["output"], *([j["benchmark"]] if j["benchmark"] else []))}


def per_shard_figures(jobs: list[dict], n_shards: int) -> dict:
    """Jobs and input edges per shard of a parsed listing.

    Input edges per shard: every input of a per-shard job, plus every input of another job
    that is a per-shard job's output (the list and `all` jobs over all shards), over the
    shard count: the edges the DAG gains per added shard.
    """
    shard_jobs = [j for j in jobs if _is_shard_job(j)]
    produced = _produced(shard_jobs)
    own = sum(len(j["input"]) for j in shard_jobs)
    gathered = sum(f in produced for j in jobs if not _is_shard_job(j) for f in j["input"])
    return {"jobs_per_shard": len(shard_jobs) / n_shards, "edges_per_shard": (own + gathered) / n_shards,
            "own_edges_per_shard": own / n_shards, "gathered_edges_per_shard": gathered / n_shards}


def shard_spec(jobs: list[dict], n_shards: int) -> dict:
    """What the bare Snakefiles copy from the workflow's listing at `n_shards` shards.

    rules: per-shard rule → jobs per shard, inputs per job (fixed ones: not a per-shard
    job's output; per-shard ones), outputs per job, whether it has a benchmark — in the
    listing's order. fixed_jobs: every other job. gathered: per-shard outputs that other
    jobs name, per shard.
    """
    shard_jobs = [j for j in jobs if _is_shard_job(j)]
    produced = _produced(shard_jobs)
    rules: dict[str, dict] = {}
    for j in shard_jobs:
        r = rules.setdefault(j["rule"], {"jobs": 0, "fixed": [], "shard": [], "outputs": [], "benchmark": False})
        r["jobs"] += 1
        r["shard"].append(sum(f in produced for f in j["input"]))
        r["fixed"].append(len(j["input"]) - r["shard"][-1])
        r["outputs"].append(len(j["output"]))
        r["benchmark"] |= j["benchmark"] is not None
    spec = {name: {"per_shard": round(r["jobs"] / n_shards), "fixed": round(median(r["fixed"])),
                   "shard": round(median(r["shard"])), "outputs": round(median(r["outputs"])),
                   "benchmark": r["benchmark"]} for name, r in rules.items()}
    figures = per_shard_figures(jobs, n_shards)
    return {"rules": spec, "fixed_jobs": len(jobs) - len(shard_jobs),
            "gathered": round(figures["gathered_edges_per_shard"])}


# The workflow's Snakefile ends with gc.freeze() (what parsing made is exempt from the
# collector's full collections); every file measured beside it does the same, so the ratios
# compare the workflows, not the collector's settings.
GC_FREEZE = "\n\nimport gc\n\ngc.freeze()\n"


def bare_snakefile(spec: dict, kind: str = "bare") -> tuple[str, int]:
    """A Snakefile with the workflow's per-shard jobs (`spec`, from shard_spec) and its fixed
    job count; returns the text and how many filler jobs it needs (config `extra`).

    kind "bare": the per-shard jobs chained (the first names plan.txt), one input each; `all`
    names the last one's output per shard, and fillers (one input each) make up the fixed jobs.
    kind "directives": the same, every rule with a log, conda env, resources and threads, and a
    benchmark where the workflow's rule has one: the floor those directives alone set.
    kind "edges": the same chain, each per-shard job with as many inputs as the workflow's
    (its per-shard inputs: the chain's previous output, then earlier outputs of the same
    shard; its fixed inputs: plan.txt and fixed/{j}.txt), as many outputs as the workflow's,
    and one list job per per-shard output that the workflow's list and `all` jobs gather
    (but one, which `all` names): at least as many input edges per shard as the workflow.
    """
    directives, edges = kind == "directives", kind == "edges"
    # Rules with fewer per-shard inputs first (the workflow's first per-shard job names none).
    ordered = sorted(spec["rules"].items(), key=lambda item: item[1]["shard"])
    chain = [(f"{name}_{c}" if r["per_shard"] > 1 else name, r) for name, r in ordered for c in range(r["per_shard"])]
    lists = max(spec["gathered"] - 1, 0) if edges else 0

    def directive_lines(name: str, wc: str, benchmark: bool) -> list[str]:
        if not directives:
            return []
        out = [f'    log: "logs/{name}/{wc}.log"', f'    conda: "{REPO / "envs" / "distill.yaml"}"',
               "    resources: mem_mb=1000, runtime=5", "    threads: 2"]
        return out + ([f'    benchmark: "benchmarks/{name}/{wc}.tsv"'] if benchmark else [])

    body, earlier, n_fixed_files = [], [], 0  # earlier: this shard's outputs so far, newest first
    for name, r in chain:
        inputs = [earlier[0] if earlier else "plan.txt"]
        if edges:
            inputs += earlier[1:r["shard"]]
            extra_fixed = r["shard"] + r["fixed"] - len(inputs)
            inputs += [f"fixed/{j}.txt" for j in range(extra_fixed)]
            n_fixed_files = max(n_fixed_files, extra_fixed)
        outputs = [f"{name}/{{s}}.{o}" for o in range(r["outputs"] if edges else 1)]
        body += ["", f"rule {name}:", "    input: " + ", ".join(f'"{f}"' for f in inputs),
                 "    output: " + ", ".join(f'"{f}"' for f in outputs),
                 *directive_lines(name, "{s}", r["benchmark"]), '    shell: "touch {output}"']
        earlier = [*outputs, *earlier]

    lines = [
        'N, E = int(config["shards"]), int(config["extra"])',
        'SHARDS = [f"{i:05d}" for i in range(N)]',
        "",
        "rule all:",
        f'    input: expand("{chain[-1][0]}/{{s}}.0", s=SHARDS), '
        f'expand("lists/{{k}}.list", k=range({lists})), expand("extra/{{i}}.txt", i=range(E))',
        "", "rule plan:", '    output: "plan.txt"', *directive_lines("plan", "plan", False),
        '    shell: "touch {output}"',
    ]
    if n_fixed_files:
        lines += ["", "rule fixed:", '    output: "fixed/{j}.txt"', '    shell: "touch {output}"']
    lines += body
    if lists:
        # The list jobs gather the chain's outputs, the last rule's first (`all` names it too).
        gathered = [f"{name}/{{s}}.0" for name, _ in reversed(chain)]
        lines += ["", "LISTS = [" + ", ".join(f'"{gathered[k % len(gathered)]}"' for k in range(lists)) + "]",
                  "", "rule list_paths:", "    input: lambda w: expand(LISTS[int(w.k)], s=SHARDS)",
                  '    output: "lists/{k}.list"', '    shell: "touch {output}"']
    lines += ["", "rule extra:", '    input: "plan.txt"', '    output: "extra/{i}.txt"',
              *directive_lines("extra", "{i}", True), '    shell: "touch {output}"']
    fixed_jobs = 2 + n_fixed_files + lists  # all, plan, the fixed files, the lists
    return "\n".join(lines) + "\n" + GC_FREEZE, spec["fixed_jobs"] - fixed_jobs


def bare_dry_run(n_shards: int, spec: dict, workdir: Path, kind: str = "bare") -> dict:
    """A bare Snakefile (bare_snakefile) built from the workflow's `spec`, dry run."""
    workdir.mkdir(parents=True, exist_ok=True)
    snakefile = workdir / "Snakefile"
    text, extra = bare_snakefile(spec, kind)
    snakefile.write_text(text)
    return dry_run(n_shards, workdir, snakefile=snakefile, config=[f"shards={n_shards}", f"extra={max(extra, 0)}"])


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
""" + GC_FREEZE
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
    return sum(len(j["input"]) for j in parse_listing(stdout))


KINDS = ("workflow", "bare", "edges", "directives", "mirror")


def _measure(kind: str, n: int, spec: dict | None, jobs: int, workdir: Path) -> dict:
    if kind == "workflow":
        res = dry_run(n, workdir)
    elif kind == "mirror":
        res = mirror_dry_run(n, jobs, workdir)
    else:
        res = bare_dry_run(n, spec, workdir, kind)
    listing = parse_listing((workdir / "stdout.txt").read_text())
    res["inputs"] = sum(len(j["input"]) for j in listing)
    res.update(per_shard_figures(listing, n))
    if kind == "workflow":
        res["spec"] = shard_spec(listing, n)
    return res


def run_against_bare(ctx: BenchContext, counts=None) -> list[Result]:
    """The workflow's dry run against bare Snakefiles with the same jobs, per count (default
    `ctx.bare_counts`: 1,000 and 10,000 shards), measured in turn within each round.

    - bare: the workflow's per-shard jobs (rules and jobs per shard from its own listing at
      that count), chained, one input each; fillers with one input each make up the other jobs.
    - edges (the goal's yardstick): the same jobs, each with the workflow's number of inputs
      and outputs, and list jobs gathering as many per-shard outputs as the workflow's list
      and `all` jobs: at least as many input edges per shard as the workflow.
    - directives: bare, every rule with a log, conda env, resources, threads, and a benchmark
      where the workflow's rule has one: the floor those directives set.
    - mirror: MIRROR_SNAKEFILE, the workflow's file graph (its per-shard jobs, inputs, outputs,
      lists, code-fingerprint jobs, directives) with no params and `touch` for a command.

    Goal: the workflow's CPU time and peak RSS ≤ 1.2× the edge-matched file's. Rounds: each
    round runs the five in turn (the order rotating, the workflow first in round 1, whose
    listing the others are built from); counts under 10,000 run `ctx.dryrun_repeats` rounds,
    10,000 and over `ctx.dryrun_repeats_large`; figures are medians.
    """
    out = []
    for n in counts or ctx.bare_counts:
        rounds = max(1, ctx.dryrun_repeats_large if n >= 10_000 else ctx.dryrun_repeats)
        runs = {k: [] for k in KINDS}
        spec, jobs = None, 0
        for r in range(rounds):
            order = KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)] if r else KINDS
            ctx.log(f"[bench 5b] snakemake -n with {n:,} shards: {', '.join(order)} (round {r + 1}/{rounds})")
            for kind in order:
                res = _measure(kind, n, spec, jobs, ctx.tmp / f"{kind}-{n}-{r}")
                if kind == "workflow":
                    spec, jobs = spec or res.pop("spec"), res["jobs"]
                    res.pop("spec", None)
                runs[kind].append(res)
        med = {k: {f: median([x[f] for x in v]) for f in v[0]} for k, v in runs.items()}
        ctx.details.append(f"bench 5b, {n:,} shards, per run (wall s / CPU s / peak RSS MB):\n" + "\n".join(
            f"  {k:<10} " + "  ".join(f"{x['wall']:.1f}/{x['cpu']:.1f}/{x['maxrss'] / 2**20:.0f}" for x in v)
            for k, v in runs.items()))
        wf = med["workflow"]

        def figures(m):
            return f"{m['wall']:.1f} s / {m['cpu']:.1f} s CPU, {fmt_bytes(m['maxrss'])}"

        def shape(m):
            return (f"{m['jobs_per_shard']:g} jobs and {m['edges_per_shard']:g} input edges per shard "
                    f"({m['own_edges_per_shard']:g} named by the per-shard jobs), {m['jobs']:,.0f} jobs")

        def row(kind, case, target, note):
            m = med[kind]
            a, b = (wf, m) if kind != "directives" else (m, med["bare"])
            cpu, mem = a["cpu"] / b["cpu"], a["maxrss"] / b["maxrss"]
            return Result(BENCH, f"{n:,} shards: {case}", "wall / CPU time, peak RSS ratio", figures(a), figures(b),
                          f"×{a['wall'] / b['wall']:.2f} wall, ×{cpu:.2f} CPU, ×{mem:.2f} RSS",
                          "≤ 1.2× time and memory" if target else "",
                          (cpu <= 1.2 and mem <= 1.2) if target else None, note)

        out += [
            row("edges", "workflow vs edge-matched bare", True,
                f"{rounds} round(s), medians; CPU time is the time figure judged; workflow: {shape(wf)}; "
                f"edge-matched: {shape(med['edges'])}"),
            row("bare", "workflow vs bare (one input per job)", False, f"bare: {shape(med['bare'])}"),
            row("directives", "bare + every rule's directives vs bare", False,
                "the floor set by log, conda, resources, threads and benchmark directives alone"),
            row("mirror", "workflow vs its mirror", False,
                f"what the workflow's params, commands, config and rules cost beyond its file graph "
                f"(MIRROR_SNAKEFILE: {shape(med['mirror'])})"),
        ]
    return out
