"""The distillation chain's scripts as users run them: determinism, interruption, batching, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SCRIPTS, extract_args, run_script, subprocess_env
from logit_lineage.formats.logits import LogitsShard

SCRIPT_NAMES = ["make_demo_dataset.py", "build_demo_teacher.py", "compute_lengths.py", "make_shards.py", "select_shard.py",
                "extract_logits.py", "explore_logits.py"]


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout and len(proc.stdout.splitlines()) > 5


@pytest.fixture(scope="module")
def reference(shard, tmp_path_factory):
    """One uninterrupted extraction of the shard: what every variant must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "a.parquet"
    run_script("extract_logits.py", *extract_args(shard, out), check=True)
    return out


def test_teacher_tokenizer_rebuilds_the_demo_tokenizer(demo_inputs, shard, tmp_path, monkeypatch):
    """A shard made as the workflow makes it (teacher given as a path relative to the run's
    folder) rebuilds its tokenizer and chat template from its own metadata, from any folder."""
    import shutil

    from transformers import AutoTokenizer

    from logit_lineage.common.errors import LineageError
    from logit_lineage.formats.fingerprints import tokenizer_fingerprint
    from logit_lineage.kd import teacher_tokenizer

    run_dir = tmp_path / "run"
    shutil.copytree(demo_inputs["teacher"], run_dir / "results/demo/teacher")
    out = run_dir / "results/distill/logits/shard-00000.parquet"
    args = extract_args(shard, out)
    args[args.index("--teacher") + 1] = "results/demo/teacher"
    run_script("extract_logits.py", *args, check=True, cwd=run_dir)
    record = LogitsShard(out).params["teacher_tokenizer"]
    assert record["teacher"] == "results/demo/teacher" and record["gguf_file"] is None
    original = AutoTokenizer.from_pretrained(demo_inputs["teacher"])
    assert record["chat_template"] == original.chat_template
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rebuilt = teacher_tokenizer(out)  # found above the shard: <run>/results/demo/teacher
    assert tokenizer_fingerprint(rebuilt) == tokenizer_fingerprint(original)
    assert rebuilt.chat_template == original.chat_template
    assert teacher_tokenizer(out.parent, teacher=str(demo_inputs["teacher"])).chat_template == original.chat_template
    # A local copy that is another tokenizer is refused against the fingerprints.
    other = tmp_path / "other"
    original.add_tokens(["<not-the-teacher's>"])
    original.save_pretrained(other)
    with pytest.raises(LineageError, match=r"^the tokenizer loaded from '.*other' is not the one the shards were made"):
        teacher_tokenizer(out, teacher=str(other))


def test_same_config_gives_identical_bytes(shard, reference, tmp_path):
    b = tmp_path / "b.parquet"
    run_script("extract_logits.py", *extract_args(shard, b), check=True)
    assert reference.read_bytes() == b.read_bytes()
    ex = LogitsShard(reference)
    assert len(ex) > 5 and ex.params["vocab_size"] > 300
    assert not (reference.parent / "a.parquet.partial").exists()


def test_sigterm_then_resume_gives_identical_bytes(shard, reference, tmp_path):
    out = tmp_path / "c.parquet"
    partial = tmp_path / "c.parquet.partial"
    # A small token budget makes many batches, so there is a "mid-shard" to stop in.
    args = extract_args(shard, out)
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "extract_logits.py"), *args],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(partial.glob("batch-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    assert "SIGTERM" in err and "rerun to finish" in err
    assert not out.exists()
    kept = list(partial.glob("batch-*.parquet"))
    assert kept
    resumed = run_script("extract_logits.py", *args, check=True)
    assert "resuming" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes()


def test_runtime_limit_keeps_progress(shard, reference, tmp_path):
    out = tmp_path / "d.parquet"
    args = extract_args(shard, out)
    proc = run_script("extract_logits.py", *args, "--max-runtime-minutes", "0.00001")
    assert proc.returncode == 75
    assert "max runtime reached" in proc.stderr and not out.exists()
    assert len(list((tmp_path / "d.parquet.partial").glob("batch-*.parquet"))) >= 1
    run_script("extract_logits.py", *args, check=True)
    assert out.read_bytes() == reference.read_bytes()


def test_token_budget_does_not_change_records(shard, reference, tmp_path):
    out = tmp_path / "e.parquet"
    run_script("extract_logits.py", *[a if a != "600" else "5000" for a in extract_args(shard, out)], check=True)
    a, b = LogitsShard(reference), LogitsShard(out)
    same_ids = total = 0
    for ea, eb in zip(a, b):
        assert ea.index == eb.index
        for j in range(ea.num_tokens):
            ta, tb = ea.token(j), eb.token(j)
            total += 1
            same = (np.array_equal(ta["top_ids"], tb["top_ids"])
                    and np.array_equal(ta["sampled_ids"], tb["sampled_ids"]))
            same_ids += same
            if same:
                np.testing.assert_allclose(np.exp(ta["top_logprobs"]), np.exp(tb["top_logprobs"]), atol=1e-4)
    assert total > 100 and same_ids / total >= 0.999


def test_explore_prints_stats_and_view(reference):
    proc = run_script("explore_logits.py", str(reference), "--plain", "--tokens", "3")
    assert proc.returncode == 0, proc.stderr
    assert "nucleus size mean" in proc.stdout and "|" in proc.stdout.splitlines()[-1]
    stats = json.loads(run_script("explore_logits.py", str(reference), "--json").stdout)
    assert stats["nucleus"]["tokens"] > 0


def _bad_dataset(tmp_path, messages):
    path = tmp_path / "bad.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"messages": messages}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("messages,expected", [
    ([], r"bad.jsonl row 1 \(counted from 0: line 2 of a JSON Lines file\): no messages"),
    ([{"role": "user", "content": "only a question"}], r"bad.jsonl row 1 \(counted from 0: line 2 .*\): no assistant turn"),
    # An assistant turn without text is refused, not trained on as an empty answer (the JSON
    # Lines reader fills the missing key with null, so both rows read the same).
    ([{"role": "user", "content": "q"}, {"role": "assistant"}],
     r"bad.jsonl row 1 \(counted from 0: line 2 .*\): message 1 \(0-based\) is an assistant turn with no content$"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}],
     r"bad.jsonl row 1 \(counted from 0: line 2 .*\): message 1 \(0-based\) is an assistant turn with no content$"),
])
def test_bad_rows_fail_with_one_line(demo_inputs, tmp_path, messages, expected):
    data = _bad_dataset(tmp_path, messages)
    out = tmp_path / "lengths.parquet"
    proc = run_script("compute_lengths.py", "--teacher", str(demo_inputs["teacher"]), "--dataset", str(data),
                      "--max-seq-len", "512", "--output", str(out), "--skipped", str(tmp_path / "s.tsv"))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and __import__("re").search(expected, last), last
    assert not out.exists() and not (tmp_path / "s.tsv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_too_long_rows_are_listed_not_dropped(demo_inputs, tmp_path):
    out, skipped = tmp_path / "lengths.parquet", tmp_path / "skipped.tsv"
    run_script("compute_lengths.py", "--teacher", str(demo_inputs["teacher"]), "--dataset",
               str(demo_inputs["dataset"]), "--max-seq-len", "40", "--output", str(out), "--skipped", str(skipped),
               check=True)
    table = pq.read_table(out).to_pandas()
    too_long = table[table["skip_reason"] == "too_long"]
    assert len(too_long) > 0 and (too_long["num_tokens"] > 40).all()
    assert len(table) == 160
    lines = skipped.read_text().splitlines()
    assert lines[0] == "index\tnum_tokens\treason" and len(lines) - 1 == len(too_long)


def test_reader_cli_refuses_wrong_files(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    proc = run_script("explore_logits.py", str(plain))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {plain}: no 'logit_lineage.format_version' key in parquet metadata: not a logit-lineage logits file"]
