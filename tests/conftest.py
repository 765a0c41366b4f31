"""Shared test plumbing: the repo's paths and a runner for real snakemake processes."""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
VENV_BIN = Path(sys.executable).parent
# Each chain keeps a small overlay here (tiny_<chain>.yaml) so workflow tests run fast;
# snakemake merges all of them over config/config.yaml.
TINY_CONFIGS = sorted((REPO / "tests" / "configs").glob("tiny_*.yaml"))


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@functools.cache
def _no_slurm_conf() -> Path:
    """An empty SLURM config file, shared by the test session (see `run_snakemake`)."""
    path = Path(tempfile.gettempdir()) / f"logit-lineage-empty-slurm-{os.getuid()}.conf"
    if not path.exists() or path.stat().st_size:
        path.write_text("")
    return path


def run_snakemake(
    workdir: Path,
    *args: str,
    configfiles: list[Path] | tuple[Path, ...] = (),
    config: list[str] | tuple[str, ...] = (),
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 1200,
    snakefile: Path | None = None,
    umask: int = 0o022,
    slurm: bool = False,
) -> subprocess.CompletedProcess:
    """Run `snakemake` on the repo's Snakefile with `workdir` as working directory.

    Targets go in `args` (before --configfile/--config, which swallow what follows).
    The run has the usual shared-machine umask (022), whatever the test runner's, so
    `assert_modes_follow_umask` can check what it wrote.

    Unless `slurm` (a run through the SLURM executor), SLURM_CONF names an empty file: the
    SLURM executor plugin runs `scontrol show config` when snakemake imports it, and where the
    SLURM client is installed but no controller answers (the test cluster of
    tests/slurm/cluster.sh when stopped) that call waits 9 s before failing; with an empty
    config it fails at once. A run that does not use SLURM is otherwise unchanged.
    """
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(snakefile or REPO / "Snakefile"), "-d", str(workdir)]
    cmd += list(args)
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    if config:
        cmd += ["--config", *config]
    env = dict(env or subprocess_env())
    if not slurm and "SLURM_CONF" not in env:
        env["SLURM_CONF"] = str(_no_slurm_conf())
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, umask=umask)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
        )
    return proc


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """A snakemake run's job-stats table (`rule  count` lines, `total` included) by rule."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M)}


def assert_modes_follow_umask(root: Path, umask: int = 0o022) -> int:
    """Every file and folder under `root` is at least as open as `umask` makes a new one
    (0644 / 0755 under 022): no output is private to its writer. Returns how many were checked."""
    import stat

    wanted = {False: 0o666 & ~umask, True: 0o777 & ~umask}
    private = []
    paths = [p for p in Path(root).rglob("*") if not p.is_symlink()]
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        need = wanted[path.is_dir()]
        if mode & need != need:
            private.append(f"{oct(mode)} {path.relative_to(root)}")
    assert not private, f"{len(private)} of {len(paths)} outputs are less readable than umask {umask:03o} allows: {private[:20]}"
    return len(paths)


def run_script(name: str, *args: str, check: bool = False, timeout: float = 600, cwd=None,
               env: dict[str, str] | None = None):
    """Run one click script as a user would: `python scripts/<name> ...`."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        capture_output=True, text=True, env=env or subprocess_env(), timeout=timeout, cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-8000:]}")
    return proc


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow's code (to edit in a test); returns its Snakefile."""
    import shutil

    for name in ("workflow", "scripts", "config", "envs"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    return dest / "Snakefile"


@pytest.fixture
def tiny_configs() -> list[Path]:
    return list(TINY_CONFIGS)


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory) -> dict[str, Path]:
    """A small demo dataset and a briefly trained demo teacher, built once per session
    with the workflow's own scripts (no download)."""
    root = tmp_path_factory.mktemp("demo_inputs")
    dataset, teacher = root / "conversations.parquet", root / "teacher"
    run_script("make_demo_dataset.py", "--n", "160", "--seed", "7", "--output", str(dataset), check=True)
    run_script("build_demo_teacher.py", "--dataset", str(dataset), "--output", str(teacher),
               "--vocab-size", "400", "--hidden-size", "48", "--steps", "60", "--batch-size", "16",
               "--lr", "0.005", "--max-len", "512", check=True)
    return {"root": root, "dataset": dataset, "teacher": teacher}


def plan_demo_shards(demo_inputs, root: Path, n_shards: int = 2) -> list[str]:
    """Lengths and an n-shard plan (root/plan.parquet) of the demo inputs, made with the CLIs;
    returns the scripts' --teacher/--dataset arguments."""
    src = ["--teacher", str(demo_inputs["teacher"]), "--dataset", str(demo_inputs["dataset"])]
    run_script("compute_lengths.py", *src, "--max-seq-len", "512", "--output", str(root / "lengths.parquet"),
               "--skipped", str(root / "skipped.tsv"), check=True)
    run_script("make_shards.py", "--lengths", str(root / "lengths.parquet"), "--n-shards", str(n_shards),
               "--output", str(root / "plan.parquet"), check=True)
    return src


@pytest.fixture(scope="module")
def shard(demo_inputs, tmp_path_factory):
    """Lengths, a 2-shard plan and shard 1's rows of the demo inputs, made with the CLIs."""
    root = tmp_path_factory.mktemp("shard")
    src = plan_demo_shards(demo_inputs, root)
    run_script("select_shard.py", "--plan", str(root / "plan.parquet"), "--shard", "1",
               "--output", str(root / "s1.parquet"), check=True)
    return {"src": src, "rows": root / "s1.parquet", "root": root}


def extract_args(shard, out, *extra):
    """extract_logits.py options for the `shard` fixture's rows; the small token budget makes
    many batches (a "mid-shard" for interruption tests)."""
    return [*shard["src"], "--shard", str(shard["rows"]), "--output", str(out), "--token-budget", "600",
            "--threads", "1", *extra]


@pytest.fixture(scope="session")
def bench_ctx():
    """The benchmarks' shared context (demo assets built once); prints one table at the end.

    It lives here because a second conftest.py under tests/bench would shadow this
    module for `from conftest import ...`. Environment knobs (make bench):
      BENCH_TEACHER / BENCH_DATASET  reuse a demo teacher dir and its conversations parquet
      BENCH_REPEATS                  timed interleaved rounds per comparison (default 3)
      BENCH_SHARDS                   shard counts of the dry-run benchmark (default 100,1000,10000)
      BENCH_BARE_SHARDS              shard counts of benchmark 5b (default 1000,10000)
      BENCH_MARKDOWN                 also write the table as markdown to this path
    """
    from benchlib import format_table, machine_info, markdown_table
    from context import BenchContext

    ctx = BenchContext(
        repeats=int(os.environ.get("BENCH_REPEATS", "3")),
        teacher=os.environ.get("BENCH_TEACHER") or None,
        dataset=os.environ.get("BENCH_DATASET") or None,
        shard_counts=tuple(int(x) for x in os.environ.get("BENCH_SHARDS", "100,1000,10000").split(",")),
        bare_counts=tuple(int(x) for x in os.environ.get("BENCH_BARE_SHARDS", "1000,10000").split(",")),
    )
    machine = machine_info()
    yield ctx
    if not ctx.results:
        return
    print("\n\n" + format_table(ctx.results, machine))
    for block in ctx.details:
        print("\n" + block)
    target = os.environ.get("BENCH_MARKDOWN")
    if target:
        md = markdown_table(ctx.results, machine, "make bench  (= .venv/bin/python -m pytest -m bench -s tests/bench)")
        if ctx.details:
            md += "\n" + "\n\n".join(f"```\n{d}\n```" for d in ctx.details) + "\n"
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(md)
        print(f"markdown table → {target}")
