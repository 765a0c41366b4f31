"""Conversations from installed packages' docstrings: the real-teacher student benchmark's
data (assistant text no one in this project wrote, offline on every machine)."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from conftest import run_script
from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import schema_defaults
from logit_lineage.distill.docstrings import clean_docstring, docstring_conversations


def test_defaults_give_at_least_300_distinct_conversations_the_same_every_time(tmp_path):
    d = schema_defaults("distill", "docstrings")
    out = tmp_path / "c.parquet"
    proc = run_script("make_docstring_conversations.py", "--n", "320", "--seed", "3", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    convs = pq.read_table(out).column("messages").to_pylist()
    again = docstring_conversations(d["packages"], n=320, seed=3, max_chars=d["max_chars"], min_chars=d["min_chars"])
    assert convs == again and len(convs) == 320
    questions = [c[0]["content"] for c in convs]
    answers = [c[1]["content"] for c in convs]
    assert len(set(questions)) == len(set(answers)) == 320
    assert all(q.startswith("What does `") and q.endswith("` do?") for q in questions)
    assert all([m["role"] for m in c] == ["user", "assistant"] for c in convs)
    assert all(d["min_chars"] <= len(a) <= d["max_chars"] for a in answers)
    names = [q.removeprefix("What does `").removesuffix("` do?") for q in questions]
    assert names == sorted(names)  # drawn, then kept in name order
    other = docstring_conversations(d["packages"], n=320, seed=4, max_chars=d["max_chars"], min_chars=d["min_chars"])
    assert other != convs


def test_cleaning_cuts_at_a_paragraph_and_drops_tables():
    doc = "First paragraph, a sentence.\n\n    Second paragraph\n    goes on.\n\n    " + "x " * 400
    assert clean_docstring(doc, max_chars=60) == "First paragraph, a sentence.\n\nSecond paragraph\ngoes on."
    assert clean_docstring("| 1 | 2 |\n|---|---|\n| 3.0 | 4.0 |", max_chars=100) is None
    assert clean_docstring(None, max_chars=100) is None


def test_too_few_or_missing_packages_are_refused_in_one_line():
    with pytest.raises(LineageError, match="documented objects in click, 100000 asked"):
        docstring_conversations(["click"], n=100_000, seed=0)
    with pytest.raises(LineageError, match="package 'no_such_pkg_x' is not installed"):
        docstring_conversations(["no_such_pkg_x"], n=1, seed=0)


def test_help():
    proc = run_script("make_docstring_conversations.py", "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout and "--packages" in proc.stdout
