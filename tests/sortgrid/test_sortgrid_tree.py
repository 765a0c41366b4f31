"""The grid's directory tree and task ids (the TABLES of the original sort-grid notes), and grid expansion."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO
from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.grid import expand_grid
from logit_lineage.sortgrid.names import parse_checkpoint_name
from logit_lineage.sortgrid.tree import (
    DYNAMIC_TASKS,
    FIXED_TASKS,
    checkpoint_relpath,
    group_name,
    parse_checkpoint_path,
    parse_group,
    task_id,
    task_spec,
)

SCHEMA = REPO / "workflow" / "schemas" / "sortgrid.schema.yaml"

# The original sort-grid notes, "Dynamic Training Task Mapping" table: task -> (layers, MLP, length mode).
SEED_DYNAMIC_TABLE = """
| task_0000 | 2 | On | mix |
| task_0001 | 2 | On | curriculum |
| task_0002 | 2 | Off | mix |
| task_0003 | 2 | Off | curriculum |
| task_0004 | 1 | On | mix |
| task_0005 | 1 | On | curriculum |
| task_0006 | 1 | Off | mix |
| task_0007 | 1 | Off | curriculum |
"""
# The original sort-grid notes, "Fixed Training Task Mapping" table: task -> (layers, MLP).
SEED_FIXED_TABLE = """
| task_0000 | 2 | On |
| task_0001 | 2 | Off |
| task_0002 | 1 | On |
| task_0003 | 1 | Off |
"""


def _table(text):
    rows = {}
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[int(cells[0].removeprefix("task_"))] = cells[1:]
    return rows


def test_dynamic_task_ids_equal_seed_table():
    table = _table(SEED_DYNAMIC_TABLE)
    assert len(DYNAMIC_TASKS) == len(table) == 8
    for tid, (layers, mlp, mode) in table.items():
        spec = task_spec("dynamic", tid)
        assert (spec.n_layers, spec.use_mlp, spec.length_mode) == (int(layers), mlp == "On", mode)
        assert task_id("dynamic", int(layers), mlp == "On", mode) == tid


def test_fixed_task_ids_equal_seed_table():
    table = _table(SEED_FIXED_TABLE)
    assert len(FIXED_TASKS) == len(table) == 4
    for tid, (layers, mlp) in table.items():
        spec = task_spec("fixed", tid)
        assert (spec.n_layers, spec.use_mlp, spec.length_mode) == (int(layers), mlp == "On", "mix")
        assert task_id("fixed", int(layers), mlp == "On", "mix") == tid


def test_the_headline_run_is_fixed_task_0003_not_the_tree_comments_task_0002():
    assert task_id("fixed", 1, False, "mix") == 3
    assert task_id("dynamic", 1, False, "mix") == 6  # the tree comment says task_0002


@pytest.mark.parametrize(
    "regime, ln, k, name",
    [("dynamic", True, 8, "len_gen_k8"), ("fixed", True, 4, "len_gen_single_k4"),
     ("dynamic", False, 16, "len_gen_no_ln_k16"), ("fixed", False, 6, "len_gen_single_no_ln_k6")],
)
def test_group_names(regime, ln, k, name):
    assert group_name(regime, ln, k) == name
    assert parse_group(name) == (regime, ln, k)


HEADLINE = "Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters40000.pt"


def test_checkpoint_path_round_trip():
    name = parse_checkpoint_name(HEADLINE)
    rel = checkpoint_relpath(name, "fixed", 1337)
    assert str(rel) == f"with_layernorm/fixed/len_gen_single_k4/task_0003/seed1337/{HEADLINE}"
    loc, parsed = parse_checkpoint_path(Path("/results/sortgrid/checkpoints") / rel)
    assert parsed == name and loc.seed == 1337 and loc.task_id == 3 and loc.group == "len_gen_single_k4"


@pytest.mark.parametrize(
    "path, expect",
    [
        (f"with_layernorm/fixed/len_gen_single_k4/task_0002/seed1337/{HEADLINE}", "task_0002"),
        (f"without_layernorm/fixed/len_gen_single_k4/task_0003/seed1337/{HEADLINE}", "layernorm"),
        (f"with_layernorm/dynamic/len_gen_single_k4/task_0003/seed1337/{HEADLINE}", "regime"),
        (f"with_layernorm/fixed/len_gen_single_k6/task_0003/seed1337/{HEADLINE}", "train_max_k"),
        (f"with_layernorm/fixed/len_gen_single_k4/task_0009/seed1337/{HEADLINE}", "task_0009"),
        (f"with_layernorm/fixed/len_gen_single_k4/task_0003/s1337/{HEADLINE}", "seed<N>"),
        (f"fixed/len_gen_single_k4/task_0003/seed1337/{HEADLINE}", "expected"),
        ("with_layernorm/fixed/len_gen_single_k4/task_0003/seed1337/Final_bad.pt", "convention"),
    ],
)
def test_inconsistent_paths_fail_with_one_line(path, expect):
    with pytest.raises(LineageError) as info:
        parse_checkpoint_path(path)
    assert expect in str(info.value) and "\n" not in str(info.value)


def _section(overlay: dict) -> dict:
    section = dict(overlay)
    validate(section, str(SCHEMA))  # fills the schema's defaults, as the Snakefile does
    return section


def test_default_config_is_a_small_grid_with_the_headline_run():
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["sortgrid"]
    runs = expand_grid(_section(default))
    paths = [str(p) for run in runs for p in run.relpaths()]
    assert len(runs) == 2 and len(paths) == 4
    assert (
        "with_layernorm/fixed/len_gen_single_k4/task_0003/seed1337/"
        "Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters500.pt"
    ) in paths
    assert (
        "with_layernorm/dynamic/len_gen_k4/task_0006/seed1337/"
        "Checkpoint_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK2to4_testK17to32_nodup1_iters250.pt"
    ) in paths


def test_full_config_lists_every_run_of_the_seed_grid():
    full = yaml.safe_load((REPO / "config" / "sort_grid_full.yaml").read_text())["sortgrid"]
    runs = expand_grid(_section(full))
    # 7 train K x (2 LN x 8 dynamic tasks + 2 LN x 4 fixed tasks) x 3 seeds
    assert len(runs) == 7 * (2 * 8 + 2 * 4) * 3 == 504
    paths = [str(p) for run in runs for p in run.relpaths()]
    assert len(set(paths)) == 1008
    assert sum(p.endswith("_iters20001.pt") for p in paths) == 504
    assert sum(p.endswith("_iters40000.pt") and "/Final_" in p for p in paths) == 504
    groups = {run.location.group for run in runs}
    assert groups == {f"len_gen_{s}{n}k{k}" for s in ("", "single_") for n in ("", "no_ln_") for k in range(4, 17, 2)}
    for path in paths:
        parse_checkpoint_path(path)  # every path is consistent with its name


@pytest.mark.parametrize("axis", ["layernorm", "regimes", "train_max_k", "layers", "mlp", "length_modes", "seeds"])
def test_an_empty_axis_is_a_one_line_error_naming_the_key(axis):
    section = _section({})
    section["grid"][axis] = []
    with pytest.raises(LineageError) as info:
        expand_grid(section)
    assert f"sortgrid.grid.{axis}" in str(info.value) and "empty axis" in str(info.value)


def test_the_schema_refuses_an_empty_axis_too():
    with pytest.raises(Exception, match="non-empty|too short|minItems|should be"):
        _section({"grid": {"seeds": []}})


def test_intermediate_checkpoints_must_come_before_the_final_one():
    section = _section({"training": {"max_iters": 100, "checkpoint_iters": [100]}})
    with pytest.raises(LineageError, match="checkpoint_iters"):
        expand_grid(section)


def test_schema_defaults_cover_every_key_with_a_description():
    schema = yaml.safe_load(SCHEMA.read_text())

    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            assert "default" in sub, f"{where}.{key} has no default"
            assert sub.get("description"), f"{where}.{key} has no description"
            if sub.get("type") == "object":
                assert sub.get("additionalProperties") is False, f"{where}.{key}"
                walk(sub, f"{where}.{key}")

    assert schema["additionalProperties"] is False
    walk(schema, "sortgrid")
