"""Format version 3 (docs/FORMAT.md): 8-bit log-probability codes with subtractive dither.

Property tests of every encoding (round trip, error bounds, the dither's uniformity), the tail estimate
through the real sampler and the v3 writer/reader within 3 standard errors, and the reader's
handling of versions 2, 3 and others.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from logit_lineage.common.errors import LineageError
from logit_lineage.formats import codes
from logit_lineage.formats.logits import (
    SCHEMA,
    SCHEMA_V3,
    ExampleRecord,
    LogitsShard,
    build_table,
    storage,
    write_logits_parquet,
)
from logit_lineage.teacher.compress import RandomNoise, compress_rows

PARAMS = {"vocab_size": 5000, "index_high_bits": 0, "top_p": 0.9, "top_p_max_elements": 20, "sampled_n": 8,
          "seed": 7}


# --- the codes -----------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 40), min_size=0, max_size=12), st.integers(0, 2**32 - 1))
def test_delta_round_trip(counts, seed):
    rng = np.random.default_rng(seed)
    counts = np.array(counts, dtype=np.int64)
    values = rng.integers(0, 256, int(counts.sum()))
    deltas = codes.delta_encode(values, counts)
    assert deltas.dtype == np.uint8
    np.testing.assert_array_equal(codes.delta_decode(deltas, counts), values)


def _u(n, seed=3, index=0, part=codes.PART_NUCLEUS):
    return codes.dither(seed, index, np.arange(n) // 7, np.arange(n) % 7 * 1000, part)


@given(st.lists(st.floats(-40.0, 0.0, allow_nan=False), min_size=1, max_size=50), st.integers(0, 2**32 - 1),
       st.sampled_from([codes.NUCLEUS_STEP, codes.TAIL_STEP]))
def test_dithered_codes_decode_within_half_a_step(lps, seed, step):
    lp = np.array(lps)
    u = codes.dither(seed, 5, np.arange(lp.size), np.arange(lp.size), codes.PART_TAIL)
    c = codes.encode(lp, u, step)
    assert c.dtype == np.uint8
    decoded = codes.decode(c, u, step)
    inside = np.maximum(lp, -codes.MAX_CODE * step)  # below the grid: clamped to its end
    assert np.all(np.abs(decoded - inside) <= step / 2 + 1e-12)
    # re-encoding a decoded value with the same dither gives the same code (transcoding is idempotent)
    np.testing.assert_array_equal(codes.encode(np.minimum(decoded, 0.0), u, step)[decoded <= 0], c[decoded <= 0])


def test_codes_clamp_below_the_grid():
    u = _u(3)
    c = codes.encode(np.array([-40.0, -16.5, 0.0]), u, codes.NUCLEUS_STEP)
    assert c.tolist()[:2] == [codes.MAX_CODE, codes.MAX_CODE] and c[2] == 0


def test_dither_is_uniform_and_keyed():
    """u from the hash: uniform on [0, 1) (mean, variance, histogram within 5 standard errors),
    a function of (seed, example, position, part, id) only, different when any of them changes."""
    n = 200_000
    u = codes.dither(11, 4, np.arange(n) // 40, np.arange(n) % 40 * 997, codes.PART_NUCLEUS)
    assert np.all((u >= 0) & (u < 1))
    assert abs(u.mean() - 0.5) <= 5 * np.sqrt(1 / 12 / n) and abs(u.var() * 12 - 1) <= 5 * np.sqrt(0.8 / n)
    hist = np.bincount((u * 16).astype(int), minlength=16) / n
    assert np.all(np.abs(hist - 1 / 16) <= 5 * np.sqrt(1 / 16 / n))
    again = codes.dither(11, 4, np.arange(n) // 40, np.arange(n) % 40 * 997, codes.PART_NUCLEUS)
    np.testing.assert_array_equal(u, again)
    for other in (codes.dither(12, 4, np.arange(n) // 40, np.arange(n) % 40 * 997, codes.PART_NUCLEUS),
                  codes.dither(11, 5, np.arange(n) // 40, np.arange(n) % 40 * 997, codes.PART_NUCLEUS),
                  codes.dither(11, 4, np.arange(n) // 40, np.arange(n) % 40 * 997, codes.PART_TAIL)):
        assert abs(np.corrcoef(u, other)[0, 1]) < 0.01 and np.mean(u == other) < 1e-3


@pytest.mark.parametrize("lp", [-0.01, -0.7, -3.33, -9.01, -15.5])
@pytest.mark.parametrize("step", [codes.NUCLEUS_STEP, codes.TAIL_STEP])
def test_decoding_error_is_uniform_whatever_the_value(lp, step):
    """Over u on a fine uniform grid (midpoint rule, exact up to 1/M²), ℓ̂ − ℓ is uniform on
    [−h/2, h/2): E[e^ℓ̂] = p·sinh(h/2)/(h/2) and E[ℓ̂] = ℓ, the identities kd's losses read by."""
    m = 20_000
    u = (np.arange(m) + 0.5) / m
    err = codes.decode(codes.encode(np.full(m, lp), u, step), u, step) - lp
    np.testing.assert_allclose(np.sort(err), np.sort((u - 0.5) * step), atol=1e-9)
    x = step / 2
    assert abs(np.mean(np.exp(lp + err)) / np.exp(lp) - np.sinh(x) / x) <= 1e-8
    assert abs(np.mean(err)) <= 1e-9


# --- records through the writer and the reader ---------------------------------------------------


def _records(n_examples=3, n_tokens=40, vocab=5000, seed=0, k=8, cap=20) -> list[ExampleRecord]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for e in range(n_examples):
        logits = torch.randn(n_tokens, vocab, generator=gen) * 2.5
        logits[:, :50] += 6.0
        c = compress_rows(logits, RandomNoise(n_tokens, gen), top_p=0.9, cap=cap, k=k)
        tc, sc = c.top_counts.numpy(), c.sampled_counts.numpy()
        top_keep = np.arange(c.top_ids.shape[1])[None, :] < tc[:, None]
        s_keep = np.arange(c.sampled_ids.shape[1])[None, :] < sc[:, None]
        out.append(ExampleRecord(
            index=10 * e + 3, positions=np.arange(1, n_tokens + 1, dtype=np.int32),
            token_ids=np.arange(n_tokens) % vocab, top_counts=tc, top_ids=c.top_ids.numpy()[top_keep],
            top_logits=c.top_logits.numpy()[top_keep], sampled_counts=sc, sampled_ids=c.sampled_ids.numpy()[s_keep],
            sampled_logits=c.sampled_logits.numpy()[s_keep], logsumexp=c.logsumexp.numpy(),
            threshold=c.threshold.numpy()))
    return out


def test_v3_round_trip(tmp_path):
    recs = _records()
    path = tmp_path / "v3.parquet"
    write_logits_parquet(path, build_table(recs, 5000, version=3, seed=7), PARAMS)
    assert pq.read_schema(path).remove_metadata().equals(SCHEMA_V3)
    assert pq.read_schema(path).metadata[b"logit_lineage.format_version"] == b"3"
    shard = LogitsShard(path)
    assert shard.version == 3 and len(shard) == len(recs)
    for rec, ex in zip(recs, shard):
        assert ex.index == rec.index
        np.testing.assert_array_equal(ex.positions, rec.positions)
        np.testing.assert_array_equal(ex.token_ids, rec.token_ids)
        np.testing.assert_array_equal(ex.top_counts, rec.top_counts)
        np.testing.assert_array_equal(ex.sampled_counts, rec.sampled_counts)
        np.testing.assert_array_equal(ex.top_ids, rec.top_ids)  # rank order kept
        # logsumexp as float32, threshold relative to it as float32
        np.testing.assert_allclose(ex.logsumexp, rec.logsumexp, rtol=1e-7)
        finite = np.isfinite(rec.threshold)
        np.testing.assert_allclose(ex.threshold[finite], rec.threshold[finite], rtol=1e-6, atol=1e-5)
        assert np.all(np.isneginf(ex.threshold[~finite]))
        # values within half a grid step of the truth
        lp = rec.top_logits - np.repeat(rec.logsumexp, rec.top_counts)
        lp_hat = ex.top_logits - np.repeat(ex.logsumexp, ex.top_counts)
        assert np.all(np.abs(lp_hat - np.maximum(lp, -codes.MAX_CODE * codes.NUCLEUS_STEP))
                      <= codes.NUCLEUS_STEP / 2 + 1e-6)
        # tail: the same (token, id) pairs, reordered by code within a token
        tok = np.repeat(np.arange(rec.num_tokens), rec.sampled_counts)
        assert sorted(zip(tok, rec.sampled_ids)) == sorted(zip(tok, ex.sampled_ids))
        s_lp = dict(zip(zip(tok, rec.sampled_ids), rec.sampled_logits - np.repeat(rec.logsumexp, rec.sampled_counts)))
        s_hat = ex.sampled_logits - np.repeat(ex.logsumexp, ex.sampled_counts)
        for key, v in zip(zip(tok, ex.sampled_ids), s_hat):
            assert abs(v - max(s_lp[key], -codes.MAX_CODE * codes.TAIL_STEP)) <= codes.TAIL_STEP / 2 + 1e-6


def test_v3_bytes_do_not_depend_on_batching(tmp_path):
    recs = _records()
    whole = build_table(recs, 5000, version=3, seed=7)
    parts = [build_table(recs[:1], 5000, version=3, seed=7), build_table(recs[1:], 5000, version=3, seed=7)]
    import pyarrow as pa

    assert pa.concat_tables(parts).combine_chunks().equals(whole.combine_chunks())
    other_seed = build_table(recs, 5000, version=3, seed=8)
    assert not other_seed.column("top_codes").equals(whole.column("top_codes"))


def test_v3_is_smaller_than_v2(tmp_path):
    recs = _records(n_examples=4, n_tokens=200)
    sizes = {}
    for v in (2, 3):
        path = tmp_path / f"v{v}.parquet"
        write_logits_parquet(path, build_table(recs, 5000, version=v, seed=7), PARAMS)
        sizes[v] = storage([path])
    assert sizes[2]["format_version"] == 2 and sizes[3]["format_version"] == 3
    assert sizes[3]["tokens"] == sizes[2]["tokens"] == 800
    assert sizes[3]["bytes_per_token"] < 0.75 * sizes[2]["bytes_per_token"], sizes


def test_v2_shards_decode_unchanged(tmp_path):
    recs = _records(n_examples=2)
    path = tmp_path / "v2.parquet"
    write_logits_parquet(path, build_table(recs, 5000), PARAMS)
    assert pq.read_schema(path).remove_metadata().equals(SCHEMA)
    shard = LogitsShard(path)
    assert shard.version == 2
    for rec, ex in zip(recs, shard):
        np.testing.assert_array_equal(ex.logsumexp, rec.logsumexp)  # float64, exact
        np.testing.assert_array_equal(ex.threshold, rec.threshold)
        np.testing.assert_array_equal(ex.sampled_ids, rec.sampled_ids)  # sample order kept


def test_reader_refuses_unknown_versions(tmp_path):
    path = tmp_path / "v4.parquet"
    write_logits_parquet(path, build_table(_records(n_examples=1), 5000, version=3, seed=7), PARAMS)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"logit_lineage.format_version"] = b"4"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(LineageError, match="format version 4, this reader understands 2 or 3"):
        LogitsShard(path)
    # version 2 metadata on version-3 columns: the schema check names the difference
    meta[b"logit_lineage.format_version"] = b"2"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(LineageError, match="schema differs from format 2"):
        LogitsShard(path)
    with pytest.raises(LineageError, match="cannot be written"):
        build_table([], 5000, version=4)
    assert json.loads(meta[b"logit_lineage.params"])["seed"] == 7


def test_reader_refuses_an_unknown_rounding_rule(tmp_path):
    """Version 3's metadata names the rule that turns codes into values; a reader refuses a
    file without it or with another, in one line."""
    path = tmp_path / "v3.parquet"
    write_logits_parquet(path, build_table(_records(n_examples=1), 5000, version=3, seed=7), PARAMS)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    assert meta[b"logit_lineage.rounding"] == codes.ROUNDING_RULE.encode()
    for rule in (b"two_point_v0", None):
        changed = {k: v for k, v in meta.items() if k != b"logit_lineage.rounding"}
        if rule is not None:
            changed[b"logit_lineage.rounding"] = rule
        pq.write_table(table.replace_schema_metadata(changed), path)
        with pytest.raises(LineageError, match="'logit_lineage.rounding' is .* decodes 'subtractive_dither_v1' only"):
            LogitsShard(path)
    v2 = tmp_path / "v2.parquet"  # version 2 has no such key
    write_logits_parquet(v2, build_table(_records(n_examples=1), 5000, version=2, seed=7), PARAMS)
    assert b"logit_lineage.rounding" not in pq.read_schema(v2).metadata



def test_hub_card_carries_the_rounding_rule_and_streaming_readers_check_it(tmp_path):
    """Rows streamed from a Hub dataset carry no file metadata: the card records version 3's
    rule and the streaming reader refuses a card with another rule (or none), in one line."""
    from logit_lineage.hub.card import card_metadata, summarize_shards
    from logit_lineage.kd.dataset import card_params

    paths = []
    for version in (2, 3):
        path = tmp_path / f"v{version}.parquet"
        write_logits_parquet(path, build_table(_records(n_examples=1), 5000, version=version, seed=7), PARAMS)
        paths.append(path)
    cards = [card_metadata(summarize_shards([p]), repo_id="org/logits", config_sha256="0" * 64)["logit_lineage"]
             for p in paths]
    assert "rounding" not in cards[0] and card_params(cards[0], "org/logits")["seed"] == PARAMS["seed"]
    assert cards[1]["rounding"] == codes.ROUNDING_RULE and card_params(cards[1], "org/logits") == cards[1]["extraction"]
    for rule in ("two_point_v0", None):
        changed = {**cards[1], "rounding": rule}
        with pytest.raises(LineageError, match="'org/logits' holds version-3 codes with rounding rule .* only"):
            card_params(changed, "org/logits")

# --- the tail estimate through sampler, writer and reader -----------------------------------------


def test_v3_tail_estimate_is_unbiased(tmp_path):
    """Many independent compressions of one distribution, written as version 3 and read
    back: the mean of Σ_nucleus p̂ f + Σ_tail ŵ f is E_p[f] within 3 standard errors, for f
    with mass far in the tail (where the nucleus alone is badly off)."""
    from logit_lineage.kd.targets import tail_weights

    vocab, m = 3000, 3000
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(vocab, generator=gen, dtype=torch.float64) * 2.0
    base[:5] += 7.0
    logits = base.float().expand(m, vocab).contiguous()
    c = compress_rows(logits, RandomNoise(m, gen), top_p=0.8, cap=4, k=6)
    tc, sc = c.top_counts.numpy(), c.sampled_counts.numpy()
    top_keep = np.arange(c.top_ids.shape[1])[None, :] < tc[:, None]
    s_keep = np.arange(c.sampled_ids.shape[1])[None, :] < sc[:, None]
    rec = ExampleRecord(index=0, positions=np.arange(1, m + 1, dtype=np.int32), token_ids=np.zeros(m, np.int64),
                        top_counts=tc, top_ids=c.top_ids.numpy()[top_keep], top_logits=c.top_logits.numpy()[top_keep],
                        sampled_counts=sc, sampled_ids=c.sampled_ids.numpy()[s_keep],
                        sampled_logits=c.sampled_logits.numpy()[s_keep], logsumexp=c.logsumexp.numpy(),
                        threshold=c.threshold.numpy())
    path = tmp_path / "tail.parquet"
    write_logits_parquet(path, build_table([rec], vocab, version=3, seed=1), {**PARAMS, "vocab_size": vocab})
    ex = LogitsShard(path).example(0)
    from logit_lineage.kd.losses import _tail_slopes, _undithered

    p = torch.softmax(base, 0).numpy()
    f = np.cos(np.arange(vocab) * 0.37) + (np.arange(vocab) > 5)  # weight on the tail
    truth = float(p @ f)
    lse = np.repeat(ex.logsumexp, ex.top_counts)
    h = torch.tensor([codes.NUCLEUS_STEP, codes.TAIL_STEP], dtype=torch.float64)
    n_ell = torch.from_numpy(ex.top_logits - lse)
    p_read = _undithered(n_ell.exp(), n_ell, h[0], None, 0.0, 0).numpy()  # p̂ / S(1): E = p exactly
    nucleus = np.add.reduceat(p_read * f[ex.top_ids], np.r_[0, np.cumsum(tc)[:-1]])
    s_lse = np.repeat(ex.logsumexp, ex.sampled_counts)
    s_ell = torch.from_numpy(ex.sampled_logits - s_lse)
    w_raw = torch.from_numpy(tail_weights(s_ell.numpy(), np.repeat(ex.threshold, ex.sampled_counts)))
    slopes = _tail_slopes(s_ell, w_raw, torch.ones_like(s_ell, dtype=torch.bool))
    w = _undithered(w_raw, s_ell, h[1], slopes, 0.0, 0).numpy()  # ŵ − h²/24·ŵ'': E = w to O(h⁴)
    tail = np.add.reduceat(w * f[ex.sampled_ids], np.r_[0, np.cumsum(sc)[:-1]])
    est = nucleus + tail
    se = est.std() / np.sqrt(m)
    assert abs(est.mean() - truth) <= 3 * se, (est.mean(), truth, se)
    nucleus_only = float(np.mean(nucleus / np.add.reduceat(np.exp(ex.top_logits - lse), np.r_[0, np.cumsum(tc)[:-1]])))
    assert abs(nucleus_only - truth) > 10 * se  # the test can tell a biased estimate


def test_kd_reads_both_versions(tmp_path):
    """logit_lineage.kd: the same records as version 2 and 3 give the same sparse targets up to
    half the codes' grid step; a streamed version-3 table passes the column check."""
    from logit_lineage.kd.dataset import CompressedLogitsDataset, _check_table

    recs = _records(n_examples=2)
    paths = {}
    for v in (2, 3):
        paths[v] = tmp_path / f"v{v}.parquet"
        write_logits_parquet(paths[v], build_table(recs, 5000, version=v, seed=7), PARAMS)
    items = {v: list(CompressedLogitsDataset(str(paths[v]))) for v in (2, 3)}
    for a, b in zip(items[2], items[3]):
        assert a["index"] == b["index"]
        np.testing.assert_array_equal(a["nucleus_ids"], b["nucleus_ids"])
        assert np.all(np.abs(a["nucleus_logprobs"] - b["nucleus_logprobs"]) <= codes.NUCLEUS_STEP / 2 + 1e-3)
        np.testing.assert_array_equal(np.sort(a["tail_ids"]), np.sort(b["tail_ids"]))
    both = list(CompressedLogitsDataset([str(paths[2]), str(paths[3])]))
    assert len(both) == 4
    _check_table(pq.read_table(paths[3]), "v3")
    _check_table(pq.read_table(paths[2]), "v2")
    with pytest.raises(LineageError, match="column 'sampled_codes' missing"):
        _check_table(pq.read_table(paths[3]).drop(["sampled_codes"]), "v3")
