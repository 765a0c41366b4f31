"""The sort-grid chain through real snakemake: the tiny grid end to end, targeted rebuilds, dry runs."""
from __future__ import annotations

import pytest
import torch

from conftest import REPO, TINY_CONFIGS, job_counts, run_snakemake
from logit_lineage.sortgrid.checkpoint import CHECKPOINT_KEYS
from logit_lineage.sortgrid.table_file import read_csv

pytestmark = pytest.mark.workflow

SG = "results/sortgrid"
TARGETS = [f"{SG}/sort_grid_table.csv", f"{SG}/sort_grid_summary.csv", f"{SG}/sort_grid_generalization.png"]
HEADLINE_RUN = "with_layernorm/fixed/len_gen_single_k4/task_0003/seed1337"
HEADLINE_STEM = "N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sortgrid")
    run_snakemake(workdir, *TARGETS, "--cores", "2", configfiles=TINY_CONFIGS)
    return workdir


def test_the_tiny_grid_builds_checkpoints_evaluations_table_and_plot(built):
    rows = read_csv(built / TARGETS[0])
    assert len(rows) == 4  # 2 runs x (intermediate + final)
    assert {(r["group"], r["task_id"], r["prefix"], r["iters"]) for r in rows} == {
        ("len_gen_single_k4", "3", "Checkpoint", "11"), ("len_gen_single_k4", "3", "Final", "24"),
        ("len_gen_k4", "6", "Checkpoint", "11"), ("len_gen_k4", "6", "Final", "24"),
    }
    assert all(0.0 <= float(r["mean_exact_match"]) <= 1.0 for r in rows)
    assert {f"exact_k{k}" for k in range(17, 33)} <= set(rows[0])
    assert (built / TARGETS[2]).read_bytes()[:4] == b"\x89PNG"
    final = built / SG / "checkpoints" / HEADLINE_RUN / f"Final_{HEADLINE_STEM}_iters24.pt"
    assert final.is_file()
    assert (built / SG / "eval" / HEADLINE_RUN / f"Final_{HEADLINE_STEM}_iters24.json").is_file()
    assert (built / "results" / "logs" / "sortgrid" / "train" / HEADLINE_RUN / f"{HEADLINE_STEM}.log").is_file()


def test_every_checkpoint_the_workflow_writes_loads_with_weights_only(built):
    paths = sorted((built / SG / "checkpoints").rglob("*.pt"))
    assert len(paths) == 4
    for path in paths:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert set(ckpt) == set(CHECKPOINT_KEYS), path
        assert isinstance(ckpt["config"], dict) and isinstance(ckpt["iters_done"], int)


def test_nothing_reruns_and_single_artifacts_rebuild_alone(built):
    again = run_snakemake(built, *TARGETS, "-n", configfiles=TINY_CONFIGS)
    assert "Nothing to be done" in again.stdout + again.stderr
    # One evaluation, by naming it.
    one_eval = built / SG / "eval" / HEADLINE_RUN / f"Checkpoint_{HEADLINE_STEM}_iters11.json"
    one_eval.unlink()
    proc = run_snakemake(built, str(one_eval.relative_to(built)), "--cores", "1", configfiles=TINY_CONFIGS)
    assert job_counts(proc).get("evaluate_sort_checkpoint") == 1 and "train_sort_model" not in job_counts(proc)
    assert one_eval.is_file()
    # Any checkpoint of the original grid, even outside the configured grid, by naming its path.
    other = (f"{SG}/checkpoints/without_layernorm/dynamic/len_gen_no_ln_k6/task_0007/seed2337/"
             "Final_N128_d128_H1_L1_npos1_mlp0_ln0_lencurriculum_trainK2to6_testK17to32_nodup1_iters24.pt")
    proc = run_snakemake(built, other, "--cores", "1", configfiles=TINY_CONFIGS)
    assert job_counts(proc).get("train_sort_model") == 1
    ckpt = torch.load(built / other, map_location="cpu", weights_only=True)
    assert ckpt["config"]["length_mode"] == "curriculum" and ckpt["config"]["seed"] == 2337
    assert (built / other.replace("/Final_", "/Checkpoint_").replace("iters24", "iters11")).is_file()


def test_the_full_config_dry_run_lists_every_run(tmp_path):
    proc = run_snakemake(tmp_path, *TARGETS, "-n", "--quiet", "rules",
                         configfiles=[REPO / "config" / "sort_grid_full.yaml"])
    counts = job_counts(proc)
    assert counts["train_sort_model"] == 504
    assert counts["evaluate_sort_checkpoint"] == 1008
    assert counts["tabulate_sort_grid"] == 1


def test_an_empty_grid_axis_stops_the_workflow_naming_the_key(tmp_path):
    overlay = tmp_path / "empty.yaml"
    overlay.write_text("sortgrid:\n  grid:\n    seeds: []\n")
    proc = run_snakemake(tmp_path, *TARGETS, "-n", configfiles=[overlay], check=False)
    assert proc.returncode != 0
    assert "sortgrid.grid.seeds" in proc.stderr + proc.stdout
