"""Codec: packed ids, uint16 quantization and the logits parquet format."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.indices import high_bits_for_vocab, pack_indices, unpack_indices
from logit_lineage.formats.logits import (
    META_PARAMS,
    META_VERSION,
    ExampleRecord,
    LogitsShard,
    build_table,
    read_metadata,
    write_logits_parquet,
)
from logit_lineage.formats.quantize import LEVELS, dequantize_rows, quantize_rows

VOCABS = [512, 151_936, 262_208, 300_000]


@pytest.mark.parametrize("vocab,bits", [(512, 0), (65_536, 0), (65_537, 1), (151_936, 2), (262_144, 2),
                                        (262_208, 3), (300_000, 3), (1 << 20, 4)])
def test_high_bits_follow_vocab(vocab, bits):
    assert high_bits_for_vocab(vocab) == bits


@settings(max_examples=60, deadline=None)
@given(vocab=st.sampled_from(VOCABS), data=st.data())
def test_ids_round_trip(vocab, data):
    ids = data.draw(hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(0, vocab - 1)))
    bits = high_bits_for_vocab(vocab)
    low, packed = pack_indices(ids, bits)
    assert low.dtype == np.uint16
    assert len(packed) == (ids.size * bits + 7) // 8
    np.testing.assert_array_equal(unpack_indices(low, packed, bits), ids)


def test_two_bit_layout_is_the_seeds():
    ids = np.array([70_000, 5, 200_000, 131_072, 65_536], dtype=np.int64)
    low, packed = pack_indices(ids, 2)
    high = (ids >> 16) & 3
    padded = np.concatenate([high, np.zeros(3, dtype=np.int64)])
    seed = [int(h[0] | (h[1] << 2) | (h[2] << 4) | (h[3] << 6)) for h in padded[: 8].reshape(-1, 4)]
    assert list(packed) == seed


def test_ids_never_wrap():
    with pytest.raises(LineageError, match="262144"):
        pack_indices(np.array([262_144]), 2)
    with pytest.raises(LineageError, match="at most 32 bits"):
        high_bits_for_vocab((1 << 32) + 1)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(hnp.arrays(np.float32, st.integers(0, 40),
                                elements=st.floats(-60, 60, width=32, allow_nan=False)), min_size=1, max_size=8))
def test_dequantization_error_bound(rows):
    counts = np.array([r.size for r in rows])
    flat = np.concatenate(rows) if counts.sum() else np.zeros(0, np.float32)
    codes, mins, maxs = quantize_rows(flat, counts)
    back = dequantize_rows(codes, counts, mins, maxs)
    seg = np.repeat(np.arange(len(rows)), counts)
    bound = (maxs.astype(np.float64) - mins)[seg] / LEVELS / 2
    assert np.all(np.abs(back - flat) <= bound * (1 + 1e-9) + 1e-12)


def _record(rng, index, n_tok, vocab):
    tc = rng.integers(1, 6, n_tok)
    sc = np.full(n_tok, 3)
    return ExampleRecord(
        index=index, positions=np.arange(1, n_tok + 1, dtype=np.int32),
        token_ids=rng.integers(0, vocab, n_tok), top_counts=tc, top_ids=rng.integers(0, vocab, tc.sum()),
        top_logits=rng.normal(size=tc.sum()).astype(np.float32), sampled_counts=sc,
        sampled_ids=rng.integers(0, vocab, sc.sum()), sampled_logits=rng.normal(size=sc.sum()).astype(np.float32),
        logsumexp=rng.normal(size=n_tok), threshold=rng.normal(size=n_tok))


PARAMS = {"vocab_size": 300_000, "index_high_bits": 3, "top_p": 0.98, "top_p_max_elements": 100,
          "sampled_n": 3, "seed": 1}


@pytest.fixture
def logits_file(tmp_path):
    rng = np.random.default_rng(0)
    recs = [_record(rng, i * 7, n, 300_000) for i, n in enumerate([3, 0, 5])]
    path = tmp_path / "shard.parquet"
    write_logits_parquet(path, build_table(recs, 300_000), PARAMS)
    return path, recs


def test_logits_parquet_round_trip(logits_file):
    path, recs = logits_file
    shard = LogitsShard(path)
    assert read_metadata(path)["params"] == PARAMS
    assert len(shard) == 3
    for rec, ex in zip(recs, shard):
        assert ex.index == rec.index and ex.num_tokens == rec.num_tokens
        np.testing.assert_array_equal(ex.top_ids, rec.top_ids)
        np.testing.assert_array_equal(ex.sampled_ids, rec.sampled_ids)
        np.testing.assert_array_equal(ex.token_ids, rec.token_ids)
        np.testing.assert_array_equal(ex.logsumexp, rec.logsumexp)
        np.testing.assert_allclose(ex.top_logits, rec.top_logits, atol=1e-3)


def test_reader_refuses_other_version(logits_file, tmp_path):
    path, _ = logits_file
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[META_VERSION] = b"1"
    bad = tmp_path / "v1.parquet"
    pq.write_table(table.replace_schema_metadata(meta), bad)
    with pytest.raises(LineageError, match=r"v1.parquet: format version 1, this reader understands 2"):
        LogitsShard(bad)


def test_reader_refuses_other_schema(logits_file, tmp_path):
    path, _ = logits_file
    table = pq.read_table(path)
    bad = tmp_path / "cols.parquet"
    pq.write_table(table.drop_columns(["sampled_threshold"]), bad)
    with pytest.raises(LineageError, match=r"cols.parquet: schema differs"):
        LogitsShard(bad)


def test_reader_refuses_foreign_parquet(tmp_path):
    bad = tmp_path / "plain.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), bad)
    with pytest.raises(LineageError, match="not a logit-lineage logits file"):
        LogitsShard(bad)


def test_metadata_must_match_vocab(logits_file, tmp_path):
    path, _ = logits_file
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[META_PARAMS] = json.dumps(PARAMS | {"index_high_bits": 2}).encode()
    bad = tmp_path / "bits.parquet"
    pq.write_table(table.replace_schema_metadata(meta), bad)
    with pytest.raises(LineageError, match="index_high_bits 2 does not match"):
        LogitsShard(bad)
