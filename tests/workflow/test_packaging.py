"""The library as users get it, and paths as users write them.

- `pip install .` (not editable) into a fresh folder installs `logit_lineage` and
  nothing else at top level; from outside the repository it reads a shard that the
  workflow made, with numpy and pyarrow only (torch is never imported).
- Results folder, teacher folder and dataset file whose paths hold a space, an
  apostrophe and a `$` go through every shell command intact.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO, assert_modes_follow_umask, run_snakemake
from logit_lineage.formats.logits import LogitsShard

pytestmark = pytest.mark.workflow

AWKWARD = "it's a $HOME dir"  # a space, an apostrophe and a `$` in every user path


@pytest.fixture(scope="module")
def awkward_run(tmp_path_factory, demo_inputs):
    """The distillation chain's lengths and one shard's logits, built by real snakemake with awkward paths."""
    root = tmp_path_factory.mktemp("awkward")
    teacher = root / f"teacher {AWKWARD}"
    shutil.copytree(demo_inputs["teacher"], teacher)
    dataset = root / f"data {AWKWARD}" / "it's conversations $1.parquet"
    dataset.parent.mkdir()
    shutil.copy2(demo_inputs["dataset"], dataset)
    results = f"results {AWKWARD}"
    cfg = root / "awkward.yaml"
    cfg.write_text(json.dumps({
        "results": results,
        "distill": {"teacher": str(teacher), "dataset": str(dataset), "n_shards": 2, "token_budget": 2048},
        "fidelity": {"enabled": False},
        "student": {"enabled": False},
    }))
    lengths = f"{results}/distill/lengths.parquet"
    shard = f"{results}/distill/logits/shard-00000.parquet"
    run_snakemake(root, "--cores", "2", lengths, shard, configfiles=[cfg])
    return {"root": root, "lengths": root / lengths, "shard": root / shard}


def test_awkward_paths_build_and_decode(awkward_run):
    assert awkward_run["lengths"].is_file()
    shard = LogitsShard(awkward_run["shard"])
    assert len(shard) > 0
    example = shard.example(0)
    assert example.num_tokens > 0 and example.top_ids.size >= example.num_tokens
    params = shard.params
    assert AWKWARD in params["teacher"] and AWKWARD in params["dataset"]
    # Run under umask 022: the shard, the lengths, the plan and the folders are 0644 / 0755.
    assert assert_modes_follow_umask(awkward_run["root"] / f"results {AWKWARD}") > 5


def test_installed_library_reads_a_workflow_shard_without_torch(awkward_run, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(REPO)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    top = sorted(p.name for p in target.iterdir() if p.name != "bin")
    assert top[0] == "logit_lineage" and len(top) == 2 and top[1].startswith("logit_lineage-"), top
    record = (target / top[1] / "RECORD").read_text().splitlines()
    tops = {line.split("/", 1)[0] for line in record if line and not line.startswith("../")}
    assert tops == {"logit_lineage", top[1]}, tops  # no `codec`, `common`, `hub`, … at top level
    assert (target / "logit_lineage" / "schemas" / "distill.schema.yaml").is_file()  # package data

    probe = """
import json, sys
import logit_lineage
from logit_lineage import LogitsShard
shard = LogitsShard(sys.argv[1])
ex = shard.example(0)
print(json.dumps({"file": logit_lineage.__file__, "rows": len(shard), "tokens": ex.num_tokens,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
"""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # -S: no site processing, so the checkout's editable install (.pth) is not on the path;
    # numpy and pyarrow come from the environment's site-packages, the library from `target`.
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-S", "-c", probe, str(awkward_run["shard"])], cwd=outside,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["file"].startswith(str(target)), got
    assert got["rows"] == len(LogitsShard(awkward_run["shard"])) and got["tokens"] > 0
    assert got["torch"] is False and got["transformers"] is False
