"""Dense dump codec: round trip, partial loads, and bad input (one clear error each)."""
from __future__ import annotations

import gzip
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logit_lineage.formats.dense_dump as dd
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.dense_dump import (
    DenseDump,
    DenseEntry,
    dump_paths,
    load_dense_dump,
    read_summary,
    write_dense_dump,
)

VOCAB = 37


def make_entries(n_samples=3, per_sample=4, vocab=VOCAB, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        DenseEntry(sample_idx=s, example_idx=100 + s, position=5 + e, logits=torch.randn(vocab, generator=g) * 4,
                   fields={"horizon": 2 ** (e % 3), "timestep": e, "question_id": f"q{s}"})
        for s in range(n_samples) for e in range(per_sample)
    ]


@pytest.fixture
def dump(tmp_path):
    entries = make_entries()
    path = tmp_path / "run.json.gz"
    write_dense_dump(path, entries, info={"note": "test"})
    return path, entries


def test_three_files_and_summary_points_at_both(dump):
    path, entries = dump
    summary, tensors, metadata = dump_paths(path)
    assert tensors.exists() and metadata.exists()
    s = read_summary(path)
    assert s["logits_file"] == tensors.name and s["metadata_file"] == metadata.name
    assert s["num_entries"] == len(entries) and s["vocab_size"] == VOCAB and s["num_samples"] == 3
    assert s["fields"] == ["horizon", "question_id", "timestep"] and s["info"] == {"note": "test"}
    meta = json.loads(metadata.read_text())
    assert meta[0] == {"key": "sample_0_entry_0", "sample_idx": 0, "entry_idx": 0, "example_idx": 100,
                       "position": 5, "horizon": 1, "timestep": 0, "question_id": "q0"}
    assert [m["key"] for m in meta][:5] == ["sample_0_entry_0", "sample_0_entry_1", "sample_0_entry_2",
                                            "sample_0_entry_3", "sample_1_entry_0"]


def test_round_trip(dump):
    path, entries = dump
    loaded = load_dense_dump(path)
    assert len(loaded) == len(entries)
    for a, b in zip(entries, loaded):
        assert a.meta == b.meta
        assert torch.equal(a.logits, b.logits)
        assert b["logits"] is b.logits and b["horizon"] == a.fields["horizon"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**6), st.integers(1, 4096),
                            st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans(), st.none())),
                  min_size=1, max_size=12),
    vocab=st.integers(1, 50),
    dtype=st.sampled_from(["float32", "bfloat16"]),
)
def test_round_trip_property(tmp_path_factory, data, vocab, dtype):
    path = tmp_path_factory.mktemp("rt") / "d.json.gz"
    g = torch.Generator().manual_seed(len(data) * 7 + vocab)
    entries = [DenseEntry(sample_idx=s, example_idx=ex, position=pos, logits=torch.randn(vocab, generator=g) * 30,
                          fields={"tag": tag}) for s, ex, pos, tag in data]
    originals = [e.logits.clone() for e in entries]
    write_dense_dump(path, entries, dtype=dtype)
    loaded = DenseDump(path).load()
    assert [e.meta for e in loaded] == [e.meta for e in entries]
    assert len({e.key for e in loaded}) == len(loaded)
    for orig, e in zip(originals, loaded):
        assert e.logits.dtype == dd.DTYPES[dtype]
        assert torch.equal(e.logits, orig.to(dd.DTYPES[dtype]))


def test_partial_load_reads_only_requested_tensors(dump, monkeypatch):
    path, entries = dump
    read = []
    real_open = dd.safe_open

    class Spy:
        def __init__(self, *a, **k):
            self._inner = real_open(*a, **k)

        def __enter__(self):
            self._inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

        def get_tensor(self, key):
            read.append(key)
            return self._inner.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    d = DenseDump(path)
    monkeypatch.setattr(dd, "safe_open", Spy)
    keys = d.select(sample_idx=1)
    assert keys == ["sample_1_entry_0", "sample_1_entry_1", "sample_1_entry_2", "sample_1_entry_3"]
    got = d.load(keys[1:3])
    assert read == keys[1:3]
    assert [e.key for e in got] == keys[1:3]
    assert torch.equal(got[0].logits, entries[5].logits)
    # metadata only: no tensor read at all
    read.clear()
    meta_only = d.load(with_logits=False)
    assert read == [] and all(e.logits is None for e in meta_only)
    # seed-style helper: one sample
    monkeypatch.setattr(dd, "safe_open", real_open)
    one = load_dense_dump(path, sample_idx=2)
    assert [e.sample_idx for e in one] == [2, 2, 2, 2]


def test_metadata_keys_not_matching_safetensors_keys(dump):
    path, _ = dump
    meta_path = dump_paths(path)[2]
    meta = json.loads(meta_path.read_text())
    meta[-1]["sample_idx"], meta[-1]["key"] = 9, f"sample_9_entry_{meta[-1]['entry_idx']}"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LineageError) as err:
        DenseDump(path)
    msg = str(err.value)
    assert "metadata keys and safetensors keys differ" in msg and "sample_9_entry_3" in msg
    assert "sample_2_entry_3" in msg and "\n" not in msg


def test_metadata_key_not_matching_its_indices(dump):
    path, _ = dump
    meta_path = dump_paths(path)[2]
    meta = json.loads(meta_path.read_text())
    meta[1]["key"] = "sample_0_entry_7"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LineageError, match=r"metadata object 1: key 'sample_0_entry_7' does not match"):
        DenseDump(path)


def test_truncated_safetensors_file(dump):
    path, _ = dump
    tensors = dump_paths(path)[1]
    data = tensors.read_bytes()
    tensors.write_bytes(data[: len(data) - 100])
    with pytest.raises(LineageError) as err:
        DenseDump(path)
    assert str(err.value).startswith(f"{tensors}: truncated or altered safetensors file")
    assert "\n" not in str(err.value)


def test_truncated_safetensors_file_without_size_check(dump):
    """A file whose recorded size was edited too still fails with one line from the header check."""
    path, _ = dump
    _, tensors, _ = dump_paths(path)
    data = tensors.read_bytes()
    tensors.write_bytes(data[: len(data) // 2])
    with gzip.open(path, "rt") as fh:
        s = json.load(fh)
    s["logits_bytes"] = len(data) // 2
    with gzip.open(path, "wt") as fh:
        json.dump(s, fh)
    with pytest.raises(LineageError, match=r"truncated or corrupt safetensors file \(.*\)$"):
        DenseDump(path)


def test_truncated_summary_and_metadata(dump):
    path, _ = dump
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LineageError, match="truncated or corrupt gzipped JSON summary"):
        DenseDump(path)
    path.write_bytes(raw)
    meta_path = dump_paths(path)[2]
    text = meta_path.read_text()
    meta_path.write_text(text[: len(text) // 2])
    with pytest.raises(LineageError, match="truncated or corrupt metadata JSON"):
        DenseDump(path)


def test_other_bad_input(tmp_path, dump):
    path, _ = dump
    with pytest.raises(LineageError, match="must end with '.json.gz'"):
        write_dense_dump(tmp_path / "x.json", make_entries())
    with pytest.raises(LineageError, match="does not exist"):
        DenseDump(tmp_path / "missing.json.gz")
    bad = make_entries()
    bad[3].logits = torch.zeros(VOCAB + 1)
    with pytest.raises(LineageError, match="vocab 38 differs"):
        write_dense_dump(tmp_path / "b.json.gz", bad)
    bad = make_entries()
    bad[0].fields["position"] = 3
    with pytest.raises(LineageError, match="clash"):
        write_dense_dump(tmp_path / "c.json.gz", bad)
    with gzip.open(path, "rt") as fh:
        s = json.load(fh)
    s["format_version"] = 99
    with gzip.open(path, "wt") as fh:
        json.dump(s, fh)
    with pytest.raises(LineageError, match="format version 99"):
        DenseDump(path)


def test_failed_write_leaves_no_summary(tmp_path):
    bad = make_entries()
    bad[-1].fields = {"horizon": [1, 2], "timestep": 0, "question_id": "q"}
    target = tmp_path / "f.json.gz"
    with pytest.raises(LineageError, match="JSON scalars"):
        write_dense_dump(target, bad)
    assert list(tmp_path.iterdir()) == []
