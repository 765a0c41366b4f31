"""Unit tests of the hub package and its codecs: no server, no subprocess."""
from __future__ import annotations

import json

import httpx2
import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conftest import REPO
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.card_file import parse_card, read_card, render_card, write_card
from logit_lineage.hub import naming
from logit_lineage.hub.receipt import make_receipt, read_receipt, write_receipt
from logit_lineage.hub.redact import ScrubFilter, redact
from logit_lineage.hub.retry import RetryPolicy, describe, is_transient
from logit_lineage.hub.settings import HubSettings
from logit_lineage.hub.target import public_endpoint

SHA = "ab" * 32
TARGET = {"repo_id": "org/logits", "repo_type": "dataset", "revision": "main", "endpoint": "https://hub.example"}


# --- settings -------------------------------------------------------------------------------

def test_schema_documents_every_key_and_publishing_is_off_by_default():
    schema = yaml.safe_load((REPO / "workflow/schemas/hub.schema.yaml").read_text())
    assert schema["properties"]["repo_id"]["default"] is None  # publishing is off by default
    assert all("default" in v and "description" in v for v in schema["properties"].values())
    assert schema["additionalProperties"] is False


def test_schema_has_no_credential_key():
    schema = yaml.safe_load((REPO / "workflow/schemas/hub.schema.yaml").read_text())
    assert not [k for k in schema["properties"] if "token" in k or "secret" in k]


@pytest.mark.parametrize("data, key", [
    ({"token": "hf_x"}, "hub.token"),
    ({"hf_token": "hf_x"}, "hub.hf_token"),
    ({"shards_per_commit": 101}, "hub.shards_per_commit"),
    ({"repo_type": "model"}, "hub.repo_type"),
    ({"repo_id": "no-namespace"}, "hub.repo_id"),
    ({"colour": 1}, "hub.colour"),
])
def test_settings_refuse_bad_keys_in_one_line(data, key):
    with pytest.raises(LineageError) as err:
        HubSettings.from_mapping(data)
    message = str(err.value)
    assert key in message and "\n" not in message
    assert "hf_x" not in message


def test_require_repo_id_says_publishing_is_off():
    with pytest.raises(LineageError, match="publishing is off"):
        HubSettings().require_repo_id()


# --- naming ---------------------------------------------------------------------------------

def test_paths_in_repo_and_card_glob():
    assert naming.path_in_repo(3, 4) == "data/train-00003-of-00004.parquet"
    assert naming.shard_index("results/distill/logits/shard-00042.parquet") == 42
    import fnmatch
    glob = naming.data_files_glob(4)
    assert all(fnmatch.fnmatch(naming.path_in_repo(i, 4), glob) for i in range(4))
    assert not fnmatch.fnmatch(naming.path_in_repo(3, 5), glob)  # a stale set with another count
    with pytest.raises(LineageError):
        naming.path_in_repo(4, 4)
    with pytest.raises(LineageError):
        naming.shard_index("x/notashard.parquet")


@given(n=st.integers(1, 2500), per=st.integers(1, 100))
def test_batches_cover_every_shard_once_within_the_commit_limit(n, per):
    members = [list(naming.batch_members(b, n, per)) for b in range(naming.n_batches(n, per))]
    assert [i for m in members for i in m] == list(range(n))
    assert all(1 <= len(m) <= per for m in members)
    assert naming.n_batches(n, 100) + 1 <= -(-n // 100) + 1


# --- receipts -------------------------------------------------------------------------------

@given(path=st.from_regex(r"data/train-\d{5}-of-\d{5}\.parquet", fullmatch=True),
       size=st.integers(0, 2**40), sha=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
       uploaded=st.booleans(), commit=st.one_of(st.none(), st.from_regex(r"[0-9a-f]{40}", fullmatch=True)))
@hsettings(max_examples=30, deadline=None)
def test_shard_receipt_round_trip(tmp_path_factory, path, size, sha, uploaded, commit):
    receipt = make_receipt("shard", **TARGET, path_in_repo=path, local_path="/x/shard-00000.parquet",
                           sha256=sha, size=size, transfer="lfs", uploaded=uploaded, commit=commit)
    out = tmp_path_factory.mktemp("r") / "receipt.json"
    write_receipt(out, receipt)
    assert read_receipt(out, "shard") == receipt


def test_commit_receipt_round_trip(tmp_path):
    receipt = make_receipt("commit", **TARGET, commit="c" * 40, created=True, files=[
        {"path_in_repo": "data/train-00000-of-00001.parquet", "sha256": SHA, "size": 5, "status": "added"}])
    write_receipt(tmp_path / "c.json", receipt)
    assert read_receipt(tmp_path / "c.json") == receipt


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.pop("sha256"), "sha256"),
    (lambda r: r.update(sha256="XYZ"), "sha256"),
    (lambda r: r.update(size=True), "size"),
    (lambda r: r.update(token="hf_leak"), "token"),
    (lambda r: r.update(receipt_version=99), "receipt_version"),
    (lambda r: r.update(kind="commit"), "kind"),
])
def test_bad_receipts_name_file_and_key(tmp_path, mutate, key):
    receipt = make_receipt("shard", **TARGET, path_in_repo="data/a.parquet", local_path="/a", sha256=SHA,
                           size=1, transfer="lfs", uploaded=True, commit=None)
    mutate(receipt)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(receipt))
    with pytest.raises(LineageError) as err:
        read_receipt(path, "shard")
    assert str(path) in str(err.value) and key in str(err.value)
    with pytest.raises(LineageError):
        write_receipt(tmp_path / "never.json", receipt)
    assert not (tmp_path / "never.json").exists()


def test_unreadable_receipt(tmp_path):
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(LineageError, match="not valid JSON"):
        read_receipt(tmp_path / "r.json")
    with pytest.raises(LineageError, match="no such receipt"):
        read_receipt(tmp_path / "missing.json")


# --- card codec -----------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.text(max_size=20),
                     st.floats(allow_nan=False, allow_infinity=False))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)),
    max_leaves=10)


@given(meta=st.dictionaries(st.text(min_size=1, max_size=10), _values, min_size=1, max_size=5),
       body=st.text(max_size=200).filter(lambda b: "---" not in b))
@hsettings(max_examples=30, deadline=None)
def test_card_round_trip(meta, body):
    parsed, parsed_body = parse_card(render_card(meta, body))
    assert parsed == meta
    assert parsed_body.strip() == body.strip()


def test_card_parses_with_huggingface_hub(tmp_path):
    from huggingface_hub import DatasetCard

    meta = {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
            "logit_lineage": {"format_version": 2}}
    text = write_card(tmp_path / "README.md", meta, "# Title\n\nBody.")
    card = DatasetCard(text)
    assert card.data.configs == meta["configs"]
    assert card.data.to_dict()["logit_lineage"] == {"format_version": 2}
    assert read_card(tmp_path / "README.md")[0] == meta


@pytest.mark.parametrize("text, match", [
    ("no header\n", "no YAML header"),
    ("---\na: 1\n", "not closed"),
    ("---\n[a, b\n---\n", "does not parse"),
    ("---\n- a\n---\n", "not a mapping"),
])
def test_bad_cards(text, match):
    with pytest.raises(LineageError, match=match):
        parse_card(text, source="README.md")


# --- retry ----------------------------------------------------------------------------------

def _http_error(status: int, headers: dict | None = None):
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "https://hub.example/api/datasets/org/x/commit/main")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return HfHubHTTPError(f"{status} error for url: {request.url}", response=response)


@pytest.mark.parametrize("status, transient", [(500, True), (502, True), (503, True), (429, True),
                                               (408, True), (401, False), (403, False), (404, False),
                                               (400, False)])
def test_transient_statuses(status, transient):
    assert is_transient(_http_error(status)) is transient


def test_transient_through_wrappers_and_transport_errors():
    wrapped = RuntimeError("Error while uploading 'x' to the Hub.")
    wrapped.__cause__ = _http_error(503)
    assert is_transient(wrapped)
    assert is_transient(httpx2.ReadTimeout("slow"))
    assert is_transient(httpx2.ConnectError("refused"))
    assert not is_transient(ValueError("malformed"))


def test_backoff_grows_and_caps_then_fails_in_one_line():
    waits = []
    policy = RetryPolicy(retries=4, backoff_seconds=1.0, backoff_max_seconds=3.0, sleep=waits.append)
    calls = []

    def always():
        calls.append(1)
        raise _http_error(500)

    with pytest.raises(LineageError) as err:
        policy.call("commit things", always)
    assert len(calls) == 5
    assert [round(w) for w in waits] == [1, 2, 3, 3]  # 1, 2, 4→3, 8→3 (+ <10% jitter)
    assert "after 5 attempt(s)" in str(err.value) and "\n" not in str(err.value)


def test_retry_succeeds_after_transient_errors_and_honours_retry_after():
    waits = []
    policy = RetryPolicy(retries=3, backoff_seconds=0.5, backoff_max_seconds=10, sleep=waits.append)
    outcomes = [_http_error(429, {"Retry-After": "4"}), _http_error(502), "ok"]

    def flaky():
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert policy.call("x", flaky) == "ok"
    assert 4 <= waits[0] < 4.5 and 1 <= waits[1] < 1.1


def test_permanent_error_is_not_retried():
    calls = []
    policy = RetryPolicy(retries=5, sleep=lambda s: None)

    def denied():
        calls.append(1)
        raise _http_error(403)

    with pytest.raises(LineageError, match="HTTP 403|403"):
        policy.call("create repo", denied)
    assert calls == [1]


def test_token_is_scrubbed_from_messages(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_supersecretvalue")
    exc = RuntimeError("server said: bad token hf_supersecretvalue")
    assert "hf_supersecretvalue" not in describe(exc)
    assert redact("a hf_supersecretvalue b") == "a *** b"
    assert public_endpoint("https://user:pw@hub.example:8443/x/") == "https://hub.example:8443/x"


def test_presigned_query_strings_are_cut_from_messages():
    exc = RuntimeError("500 for url: https://bucket.example/obj?X-Amz-Signature=abc&X-Amz-Credential=def")
    text = describe(exc)
    assert "X-Amz-Signature" not in text and "https://bucket.example/obj?…" in text


def test_log_records_are_scrubbed(monkeypatch, caplog):
    import logging

    from logit_lineage.hub.target import secure_logging

    monkeypatch.setenv("HF_TOKEN", "hf_logsecretvalue")
    secure_logging()
    handler = caplog.handler
    handler.addFilter(ScrubFilter())
    logging.getLogger("huggingface_hub.utils._http").warning(
        "HTTP Error 500 thrown while requesting PUT %s", "https://s3.example/x?X-Amz-Signature=zzz hf_logsecretvalue")
    assert "zzz" not in caplog.text and "hf_logsecretvalue" not in caplog.text and "s3.example/x?…" in caplog.text


def test_hub_modules_import_each_other_without_a_cycle():
    """Imports anywhere in a module (function bodies too) form no cycle inside the hub package."""
    import ast
    from pathlib import Path

    import logit_lineage.hub as hub_pkg

    folder = Path(hub_pkg.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            deps |= {n.split(".")[2] for n in names if n.startswith("logit_lineage.hub.")}
        graph[path.stem] = deps & {p.stem for p in folder.glob("*.py")}

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join([*stack, name])}"
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*stack, name])

    for name in sorted(graph):
        visit(name, [])
    assert "redact" in graph["retry"] and "redact" in graph["target"]
