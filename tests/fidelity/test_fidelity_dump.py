"""Dense logits for sampled tokens: the sample, the alignment with the compressed
records (entry for token t = teacher at t − 1), and the shard comparison end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.distill.extract import ExtractionSettings, compress_batch
from logit_lineage.fidelity.dense import dense_logits, sample_tokens
from logit_lineage.fidelity.report import aggregate, compare_shard, format_headline, plot_report
from logit_lineage.formats.dense_dump import DenseDump, DenseEntry, write_dense_dump
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.logits import LogitsShard, build_table, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.compress import Workspace
from logit_lineage.teacher.data import Row

VOCAB = 90


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(40.0)  # peaked distributions, like a trained teacher's
    return m


def make_rows(n=9, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(6, 40))
        ids = rng.integers(1, VOCAB, size=length).astype(np.int64)
        kept = np.sort(rng.choice(np.arange(1, length), size=int(rng.integers(1, length - 1)), replace=False))
        rows.append(Row(100 + 3 * i, ids, kept.astype(np.int64)))
    return sorted(rows, key=lambda r: len(r.ids))


def test_sample_tokens_is_seeded_uniform_and_complete():
    rows = make_rows()
    total = sum(len(r.kept) for r in rows)
    a = sample_tokens(rows, 25, seed=1, stream=0)
    assert a == sample_tokens(rows, 25, seed=1, stream=0)
    assert a != sample_tokens(rows, 25, seed=1, stream=1)
    assert len(a) == 25 and len({(p.row, p.position) for p in a}) == 25
    assert [(p.row, p.position) for p in a] == sorted((p.row, p.position) for p in a)
    for p in a:
        assert rows[p.row].kept[p.token_index] == p.position
    everything = sample_tokens(rows, 10 ** 6, seed=1)
    assert len(everything) == total
    assert sample_tokens([], 5, seed=1) == []


def test_dense_logits_are_the_forward_at_t_minus_1(model):
    rows = make_rows()
    picks = sample_tokens(rows, 30, seed=3)
    got = dense_logits(model, rows, picks, token_budget=60, max_batch_size=3, pad_id=0)  # several batches
    with torch.no_grad():
        for p, z in zip(picks, got):
            ids = torch.from_numpy(rows[p.row].ids)[None]
            ref = model(input_ids=ids).logits[0, p.position - 1]
            torch.testing.assert_close(z, ref, atol=2e-4, rtol=1e-4)
            wrong = model(input_ids=ids).logits[0, p.position]
            assert not torch.allclose(z, wrong, atol=1e-2)


@pytest.fixture(scope="module")
def shard_pair(model, tmp_path_factory):
    """A compressed shard from the extractor's own compress_batch and a dense dump of it."""
    tmp = tmp_path_factory.mktemp("pair")
    rows = make_rows()
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=0.9, top_p_max_elements=20, sampled_n=6), seed=5, token_budget=200, max_batch_size=8,
                                  head_chunk_rows=16)
    records = compress_batch(model, rows, settings, 0, Workspace(), torch.Generator())
    params = {"vocab_size": VOCAB, "index_high_bits": high_bits_for_vocab(VOCAB), "top_p": 0.9,
              "top_p_max_elements": 20, "sampled_n": 6, "seed": 5}
    logits_path = tmp / "shard-00000.parquet"
    write_logits_parquet(logits_path, build_table(records, VOCAB), params)
    picks = sample_tokens(rows, 40, seed=2)
    z = dense_logits(model, rows, picks, token_budget=100, max_batch_size=4, pad_id=0)
    entries = [DenseEntry(sample_idx=p.row, example_idx=rows[p.row].index, position=p.position, logits=l,
                          fields={"token_index": p.token_index, "token_id": int(rows[p.row].ids[p.position])})
               for p, l in zip(picks, z)]
    dump_path = tmp / "dense.json.gz"
    write_dense_dump(dump_path, entries)
    return tmp, dump_path, logits_path, rows, picks


def test_compressed_records_match_dense_logits(shard_pair):
    _, dump_path, logits_path, _, _ = shard_pair
    obj = compare_shard(DenseDump(dump_path), LogitsShard(logits_path), temperature=2.0, shard_name="shard-00000")
    s = obj["summary"]
    assert s["kl"]["n"] == 40
    assert s["top1_agree"]["mean"] == 1.0
    # only uint16 quantization separates the record from the dense logits
    assert s["max_logit_error"]["max"] < 2e-3
    assert s["logsumexp_error"]["max"] < 1e-4
    assert s["nucleus_mass"]["min"] >= 0.9 - 1e-3 or s["nucleus_size"]["max"] == 20
    assert s["abs_ce_teacher_t_rel_error"]["mean"] < s["abs_ce_teacher_t_nucleus_only_rel_error"]["mean"]
    report = aggregate([obj])
    head = report["headline"]
    assert head["dense_bf16_bytes_per_token"] == 2 * VOCAB
    assert head["tokens"] == 40 and head["top1_agreement"] == 1.0
    assert "top-1 agreement" in format_headline(head)
    plot_report([obj], report, shard_pair[0] / "plot.png", 2.0)
    assert (shard_pair[0] / "plot.png").stat().st_size > 10_000


def test_misaligned_dump_is_refused(shard_pair):
    tmp, dump_path, logits_path, rows, picks = shard_pair
    # a dump whose position is not a kept token of the record (e.g. other mask options)
    p = picks[0]
    bad_pos = next(t for t in range(1, len(rows[p.row].ids)) if t not in set(rows[p.row].kept))
    bad = [DenseEntry(sample_idx=p.row, example_idx=rows[p.row].index, position=bad_pos,
                      logits=torch.zeros(VOCAB), fields={"token_index": 0, "token_id": 1})]
    write_dense_dump(tmp / "bad.json.gz", bad)
    with pytest.raises(LineageError, match=f"position {bad_pos}.*no token at this position"):
        compare_shard(DenseDump(tmp / "bad.json.gz"), LogitsShard(logits_path), temperature=2.0, shard_name="x")
    other = [DenseEntry(sample_idx=0, example_idx=7, position=1, logits=torch.zeros(VOCAB),
                        fields={"token_index": 0, "token_id": 1})]
    write_dense_dump(tmp / "other.json.gz", other)
    with pytest.raises(LineageError, match="example not in the compressed shard"):
        compare_shard(DenseDump(tmp / "other.json.gz"), LogitsShard(logits_path), temperature=2.0, shard_name="x")
