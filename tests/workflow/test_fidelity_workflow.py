"""The fidelity chain through real snakemake on the tiny configs."""
from __future__ import annotations

import re

import pytest

from conftest import run_snakemake
from logit_lineage.fidelity.metrics_file import read_fidelity_report, read_shard_fidelity
from logit_lineage.formats.dense_dump import DenseDump

REPORT = "results/fidelity/fidelity_report.json"
# Smaller still than the tiny overlays: the distillation chain is only the fidelity chain's input here,
# so a barely trained teacher on a few conversations and two shards will do.
FAST = """
demo: {n_conversations: 80, train_steps: 8}
distill: {n_shards: 1}
fidelity: {tokens_per_shard: 20}
"""


@pytest.fixture
def fast_configs(tmp_path, tiny_configs):
    path = tmp_path / "fast_fidelity.yaml"
    path.write_text(FAST)
    return [*tiny_configs, path]


@pytest.mark.workflow
def test_fidelity_report_builds(tmp_path, fast_configs):
    run_snakemake(tmp_path, REPORT, "--cores", "2", configfiles=fast_configs)
    res = tmp_path / "results"
    report = read_fidelity_report(res / "fidelity/fidelity_report.json")
    head = report["headline"]
    n_shards = len(report["per_shard"])
    assert n_shards == 1 and head["tokens"] == 20
    assert head["top1_agreement"] > 0.95  # same teacher, same alignment: only quantization differs
    assert 0 < head["mean_nucleus_mass"] <= head["mean_stored_mass"] <= 1.0
    assert head["max_logit_error"] < 5e-3
    assert abs(head["ce_teacher_t_rel_error_mean"]) < 0.05
    assert head["dense_bf16_over_compressed"] > 1
    assert (res / "fidelity/fidelity_report.png").stat().st_size > 10_000
    dump = DenseDump(res / "fidelity/dense/shard-00000.json.gz")
    assert len(dump) == 20 and dump.dtype == "float32"
    assert dump.summary["info"]["stream"] == 0

    # one artifact rebuilt alone, by naming it; the same seeded sample comes back
    shard_json = res / "fidelity/shards/shard-00000.json"
    before = read_shard_fidelity(shard_json)["tokens"]
    shard_json.unlink()
    run_snakemake(tmp_path, "results/fidelity/shards/shard-00000.json", "--cores", "2", configfiles=fast_configs)
    assert read_shard_fidelity(shard_json)["tokens"] == before


@pytest.mark.workflow
def test_fidelity_config_switch_and_schema(tmp_path, tiny_configs):
    off, bad = tmp_path / "off.yaml", tmp_path / "bad.yaml"
    off.write_text("fidelity: {enabled: false}\n")
    bad.write_text("fidelity: {dense_dtype: int8}\n")
    dry = run_snakemake(tmp_path, "-n", configfiles=[*tiny_configs, off])
    jobs = {m[1] for m in re.finditer(r"^(\w+)\s+\d+$", dry.stdout, re.M)}  # the job table's rules
    assert "dump_student_dense" in jobs  # the students' dense targets use the same script: not fidelity's
    assert not {"dump_dense_logits", "fidelity_shard", "fidelity_report"} & jobs
    proc = run_snakemake(tmp_path, "-n", configfiles=[*tiny_configs, bad], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "invalid config key 'fidelity.dense_dtype'" in out
