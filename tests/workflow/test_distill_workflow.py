"""The distillation chain through real snakemake runs: dry runs, targeted rebuilds, lint, config errors."""
from __future__ import annotations

import re

import pytest

from conftest import REPO, copy_workflow, run_snakemake
from logit_lineage.formats.logits import LogitsShard

pytestmark = pytest.mark.workflow
DISTILL_TINY = REPO / "tests" / "configs" / "tiny_distill.yaml"


def job_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():  # callers pass stdout + stderr
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_dry_run_lists_every_shard(tmp_path):
    proc = run_snakemake(tmp_path, "-n")
    counts = job_counts(proc.stdout)
    assert counts["extract_logits"] == 4  # n_shards of the embedded default
    for i in range(4):
        assert f"results/distill/logits/shard-{i:05d}.parquet" in proc.stdout


def test_dry_run_scales_with_configured_shards(tmp_path):
    cfg = tmp_path / "shards.yaml"
    cfg.write_text("distill:\n  n_shards: 37\n")
    proc = run_snakemake(tmp_path, "-n", configfiles=[cfg])
    assert job_counts(proc.stdout)["extract_logits"] == 37


def test_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for rule" not in proc.stdout + proc.stderr


def test_schema_violation_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill:\n  n_shards: 0\n")
    proc = run_snakemake(tmp_path, "-n", configfiles=[bad], check=False)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "invalid config key" in ln]
    assert lines == ["invalid config key 'distill.n_shards': 0 is less than the minimum of 1 "
                     "(schema: workflow/schemas/distill.schema.yaml)"]
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("distill:\n  top_k: 3\n")
    proc = run_snakemake(tmp_path, "-n", configfiles=[unknown], check=False)
    assert "invalid config key 'distill': Additional properties are not allowed ('top_k' was unexpected)" in (
        proc.stdout + proc.stderr)


@pytest.mark.parametrize("config,expected", [
    # A path that does not exist is named at parse time (a dry run), not by the job as
    # "Repo id must be in the form 'repo_name' or 'namespace/repo_name'".
    ('distill={"teacher": "/nonexistent/model"}',
     "invalid config key 'distill.teacher': path '/nonexistent/model': no such file or directory"),
    ('distill={"teacher": "models/my-teacher/final"}',
     "invalid config key 'distill.teacher': path 'models/my-teacher/final': no such file or directory (relative to "),
    ('distill={"dataset": "data/chats.jsonl"}',
     "invalid config key 'distill.dataset': path 'data/chats.jsonl': no such file or directory (relative to "),
    ('distill={"chat_template": "templates/chat.jinja"}',
     "invalid config key 'distill.chat_template': path 'templates/chat.jinja': no such file or directory"),
])
def test_missing_local_paths_fail_the_dry_run(tmp_path, config, expected):
    proc = run_snakemake(tmp_path, "-n", config=[config], check=False)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "invalid config key" in ln]
    assert len(lines) == 1 and lines[0].startswith(expected), lines or proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()


def test_nested_config_on_the_command_line_takes_numbers(tmp_path):
    """`--config distill='{"n_shards": 7}'` hands snakemake's schema '7' (YAML base loader):
    the schema's type turns it into 7, as in a --configfile."""
    proc = run_snakemake(tmp_path, "-n", config=['distill={"n_shards": 7, "exclude_eot": "false", "top_p": 0.9}'])
    assert job_counts(proc.stdout + proc.stderr)["extract_logits"] == 7
    bad = run_snakemake(tmp_path, "-n", config=['distill={"n_shards": "many"}'], check=False)
    assert "invalid config key 'distill.n_shards': 'many' is not of type 'integer'" in bad.stdout + bad.stderr


def test_one_shard_is_built_alone_and_rebuilt_alone(tmp_path):
    target = "results/distill/logits/shard-00001.parquet"
    # A copy of the code, so the test can edit a script and see what reruns.
    snakefile = copy_workflow(tmp_path / "code")
    work = tmp_path / "work"
    proc = run_snakemake(work, target, "--cores", "2", configfiles=[DISTILL_TINY], snakefile=snakefile)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["extract_logits"] == 1
    logits = sorted(p.name for p in (work / "results/distill/logits").iterdir())
    assert logits == ["shard-00001.parquet"]
    shard = LogitsShard(work / target)
    assert len(shard) > 0 and shard.params["teacher"] == "demo"
    # Remove it: asking again reruns that one extraction and nothing upstream.
    (work / target).unlink()
    proc = run_snakemake(work, target, "--cores", "2", configfiles=[DISTILL_TINY], snakefile=snakefile)
    assert job_counts(proc.stdout + proc.stderr) == {"extract_logits": 1, "total": 1}
    assert LogitsShard(work / target).version == 2
    # distill.format_version: 3 rewrites that shard (its params changed), in format 3, same records.
    v3 = tmp_path / "v3.yaml"
    v3.write_text("distill: {format_version: 3}\n")
    proc = run_snakemake(work, target, "--cores", "2", configfiles=[DISTILL_TINY, v3], snakefile=snakefile)
    assert job_counts(proc.stdout + proc.stderr) == {"extract_logits": 1, "total": 1}
    v3_shard = LogitsShard(work / target)
    assert v3_shard.version == 3 and len(v3_shard) == len(shard)
    assert [ex.index for ex in v3_shard] == [ex.index for ex in shard]
    assert all((a.top_ids == b.top_ids).all() for a, b in zip(shard, v3_shard))
    # Editing the extraction script makes exactly that rule out of date (through its code
    # fingerprint); editing a library module makes every rule whose script imports it out
    # of date, and no other.
    with open(snakefile.parent / "scripts" / "extract_logits.py", "a") as fh:
        fh.write("# edited\n")
    proc = run_snakemake(work, target, "-n", configfiles=[DISTILL_TINY], snakefile=snakefile)
    assert job_counts(proc.stdout + proc.stderr) == {"code_fingerprint": 1, "extract_logits": 1, "total": 2}
    with open(snakefile.parent / "scripts" / "logit_lineage" / "distill" / "lengths.py", "a") as fh:
        fh.write("# edited\n")
    proc = run_snakemake(work, target, "-n", configfiles=[DISTILL_TINY], snakefile=snakefile)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["compute_lengths"] == counts["make_shards"] == counts["select_shard"] == 1
    assert counts["extract_logits"] == 1
    assert counts["code_fingerprint"] == 4  # the four scripts that import it
    assert "make_demo_dataset" not in counts and "build_demo_teacher" not in counts  # they do not read it


def test_failed_job_leaves_no_output_and_rerun_completes(tmp_path):
    """A bad dataset row fails compute_lengths with its one-line error; nothing finished-looking is left."""
    data = tmp_path / "chats.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                    '{"messages": []}\n')
    cfg = tmp_path / "real.yaml"
    cfg.write_text(f"distill:\n  dataset: {data}\n  n_shards: 1\n")
    proc = run_snakemake(tmp_path, "results/distill/shards/shard-00000.parquet", "--cores", "2",
                         configfiles=[DISTILL_TINY, cfg], check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/distill/compute_lengths.log").read_text()
    assert log.strip().splitlines()[-1] == f"error: {data} row 1 (counted from 0: line 2 of a JSON Lines file): no messages (expected a non-empty list of {{role, content}})"
    assert not (tmp_path / "results/distill/lengths.parquet").exists()
    data.write_text(data.read_text().splitlines()[0] + "\n")
    run_snakemake(tmp_path, "results/distill/shards/shard-00000.parquet", "--cores", "2",
                  configfiles=[DISTILL_TINY, cfg])
    assert (tmp_path / "results/distill/shards/shard-00000.parquet").exists()


def test_lineage_graphs_without_gpu_or_network(tmp_path):
    """--rulegraph, --dag and --summary on the embedded default: what users draw before running."""
    rulegraph = run_snakemake(tmp_path, "--rulegraph").stdout
    assert rulegraph.lstrip().startswith("digraph snakemake_dag")
    for rule in ("compute_lengths", "make_shards", "select_shard", "extract_logits", "train_expert",
                 "train_sort_model", "dump_dense_logits", "fidelity_report"):
        assert f'label = "{rule}"' in rulegraph, rule
    dag = run_snakemake(tmp_path, "--dag").stdout
    assert dag.count('label = "extract_logits') == 4  # one node per shard
    summary = run_snakemake(tmp_path, "--summary").stdout
    assert "results/distill/logits/shard-00003.parquet\t" in summary
