"""Shared test plumbing: the repo's paths and a runner for real snakemake processes."""
from __future__ import annotations

import os
import subprocess
import sys
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


def run_snakemake(
    workdir: Path,
    *args: str,
    configfiles: list[Path] | tuple[Path, ...] = (),
    config: list[str] | tuple[str, ...] = (),
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 1200,
    snakefile: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run `snakemake` on the repo's Snakefile with `workdir` as working directory.

    Targets go in `args` (before --configfile/--config, which swallow what follows).
    """
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(snakefile or REPO / "Snakefile"), "-d", str(workdir)]
    cmd += list(args)
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    if config:
        cmd += ["--config", *config]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env or subprocess_env(), timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
        )
    return proc


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
    run_script("build_demo_teacher.py", "--dataset", str(dataset), "--output-dir", str(teacher),
               "--vocab-size", "400", "--hidden-size", "48", "--steps", "60", "--batch-size", "16",
               "--lr", "0.005", "--max-len", "512", check=True)
    return {"root": root, "dataset": dataset, "teacher": teacher}
