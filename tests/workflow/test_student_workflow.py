"""The student chain through real snakemake on the tiny configs: every method and seed,
the table, a rerun that does nothing, the switch and the schema."""
from __future__ import annotations

import csv
import json

import pytest

from conftest import job_counts, run_snakemake
from logit_lineage.formats.logits import LogitsShard
from logit_lineage.student import METHODS
from logit_lineage.student.eval_file import read_eval

pytestmark = pytest.mark.workflow

TABLE = "results/student/student_table.csv"
TARGETS = [TABLE, "results/student/student_summary.json", "results/student/student_kl.png",
           "results/benchmarks/student/student_timings.csv"]
# Smaller still than the tiny overlays: the distillation chain is only the student chain's input here,
# so a barely trained teacher on a few conversations and one shard will do.
FAST = """
demo: {n_conversations: 80, train_steps: 8}
distill: {n_shards: 1}
"""


@pytest.fixture
def fast_configs(tmp_path, tiny_configs):
    path = tmp_path / "fast_student.yaml"
    path.write_text(FAST)
    return [*tiny_configs, path]


def test_student_chain_builds_table_summary_and_plot(tmp_path, fast_configs):
    proc = run_snakemake(tmp_path, *TARGETS, "--cores", "2", configfiles=fast_configs)
    counts = job_counts(proc)
    assert counts["train_student"] == 8 and counts["prepare_student_data"] == 1  # 4 methods x 2 seeds (tiny)
    # the default student.formats: one version-3 variant, extracted again, learnt by compressed
    assert counts["extract_student_format"] == 1 and counts["train_student_format"] == 2
    with open(tmp_path / TABLE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = [(m, "main", s) for m in METHODS for s in ("1", "2")]
    at = expected.index(("compressed", "main", "2")) + 1
    expected[at:at] = [("compressed", "v3-c16-k8", s) for s in ("1", "2")]
    assert [(r["method"], r["format"], r["seed"]) for r in rows] == expected
    variant = LogitsShard(tmp_path / "results/student/formats/v3-c16-k8/logits/shard-00000.parquet")
    assert variant.version == 3 and variant.params["top_p_max_elements"] == 16 and variant.params["sampled_n"] == 8
    size = {(r["method"], r["format"]): r["bytes_per_token"] for r in rows}
    assert size[("dense", "main")] == size[("sft", "main")] == ""  # they do not learn from the shards' values
    assert 0 < float(size[("compressed", "v3-c16-k8")]) < 0.6 * float(size[("compressed", "main")])
    assert size[("topk", "main")] == size[("compressed", "main")]
    assert all(int(r["steps"]) == 12 and float(r["kl_to_teacher"]) > 0 for r in rows)
    assert len({r["heldout_tokens"] for r in rows}) == 1
    summary = json.loads((tmp_path / "results/student/student_summary.json").read_text())
    assert summary["methods"]["dense"]["n_seeds"] == 2 and summary["goal"]["gap_closed_min"] == 0.95
    formats = summary["formats"]
    assert list(formats) == ["main", "v3-c16-k8"] and formats["main"]["format_version"] == 2
    assert formats["v3-c16-k8"]["n_seeds"] == 2 and len(formats["v3-c16-k8"]["kl_delta_vs_main"]["values"]) == 2
    assert isinstance(formats["v3-c16-k8"]["within_main_spread"], bool)
    assert (tmp_path / "results/student/student_kl.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / TARGETS[3], newline="") as fh:
        assert all(float(r["train_seconds"]) > 0 for r in csv.DictReader(fh))
    for seed in (1, 2):
        runs = [read_eval(tmp_path / f"results/student/{m}/seed-{seed}/eval.json") for m in METHODS]
        assert len({r["training"]["data_order_sha256"] for r in runs}) == 1
        assert len({r["training"]["init_sha256"] for r in runs}) == 1

    again = run_snakemake(tmp_path, *TARGETS, "-n", configfiles=fast_configs)
    assert "Nothing to be done" in again.stdout + again.stderr
    # One run rebuilt alone, by naming it: same bytes (no wall time in a result).
    one = tmp_path / "results/student/compressed/seed-2/eval.json"
    before = one.read_bytes()
    ckpt = one.with_name("model.safetensors").read_bytes()
    one.unlink()
    proc = run_snakemake(tmp_path, str(one.relative_to(tmp_path)), "--cores", "1", configfiles=fast_configs)
    assert job_counts(proc) == {"train_student": 1, "total": 1}
    assert one.read_bytes() == before and one.with_name("model.safetensors").read_bytes() == ckpt


def test_student_switch_and_schema(tmp_path, tiny_configs):
    dry = run_snakemake(tmp_path, "-n", configfiles=tiny_configs)
    assert job_counts(dry)["train_student"] == 8
    off, bad = tmp_path / "off.yaml", tmp_path / "bad.yaml"
    off.write_text("student: {enabled: false}\n")
    dry = run_snakemake(tmp_path, "-n", configfiles=[*tiny_configs, off])
    assert "train_student" not in dry.stdout and "tabulate_students" not in dry.stdout
    bad.write_text("student: {methods: [dense, distill]}\n")
    proc = run_snakemake(tmp_path, "-n", configfiles=[*tiny_configs, bad], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "invalid config key 'student.methods.1': 'distill' is not one of" in out
