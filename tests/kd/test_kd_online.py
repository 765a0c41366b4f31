"""The one-call online API (`logit_lineage.kd.sparse_targets`) and the records conversion.

The online targets are compared, field by field and bit for bit, with what the extraction
(`distill.extract.extract_shard`, the code the workflow runs) writes from the same teacher
logits and the loader (`CompressedLogitsDataset` + `collate`) reads back, for format
versions 2 and 3; docs/KD.md's online loop runs as written."""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, subprocess_env
from logit_lineage.common.schema import schema_defaults
from logit_lineage.distill.extract import ExtractionSettings, StopFlag, extract_shard
from logit_lineage.formats.logits import LogitsShard, build_table, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.kd import CompressedLogitsDataset, SparseTargets, compressed_records, shard_params, sparse_targets
from logit_lineage.teacher.compress import BlockNoise, compress_rows
from logit_lineage.teacher.data import Row

VOCAB, HIDDEN_LEN = 3000, 150


class _Body(torch.nn.Module):
    """A decoder body whose hidden state at (b, t) is example ids[b, 0]'s stored logits row t."""

    def __init__(self, bank: torch.Tensor):
        super().__init__()
        self.bank = bank
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, use_cache=False):
        h = self.bank[input_ids[:, 0]][:, : input_ids.shape[1]] * attention_mask[..., None]
        return SimpleNamespace(last_hidden_state=h)


class _Teacher(torch.nn.Module):
    """Stand-in teacher for extract_shard: identity lm head over the body's rows, so the
    extraction compresses exactly the bank's logits (x @ I is exact in float32)."""

    def __init__(self, bank: torch.Tensor):
        super().__init__()
        self.body = _Body(bank)
        self.head = torch.nn.Linear(bank.shape[-1], bank.shape[-1], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(bank.shape[-1]))
        self.config = SimpleNamespace()

    def get_decoder(self):
        return self.body

    def get_output_embeddings(self):
        return self.head


def _bank(n_examples: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_examples, HIDDEN_LEN, VOCAB, generator=gen) * 2.5
    z[..., :40] += 5.0 * torch.rand(n_examples, HIDDEN_LEN, 40, generator=gen)
    z[0, 3] = 0.0  # a flat row: nucleus at the cap, large tail
    z[0, 5, 7] = 40.0  # a peaked row: whole tail far below
    return z


def _assert_same_targets(a: SparseTargets, b: SparseTargets) -> None:
    for f in fields(SparseTargets):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            assert torch.equal(x, y), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("version", [2, 3])
def test_online_targets_equal_an_extracted_shard_read_back(tmp_path, version):
    """Same logits, same seed: extract_shard → parquet → CompressedLogitsDataset.collate gives
    exactly sparse_targets(...) (ids, counts, probabilities, weights, log-probs, positions)."""
    n_ex = 3
    bank = _bank(n_ex)
    lengths = [150, 97, 130]  # > 64 kept tokens: several noise blocks per example
    rng = np.random.default_rng(1)
    rows, mask = [], torch.zeros(n_ex, HIDDEN_LEN, dtype=torch.bool)
    input_ids = torch.zeros(n_ex, HIDDEN_LEN, dtype=torch.long)
    for e, n in enumerate(lengths):
        ids = np.concatenate([[e], rng.integers(0, VOCAB, n - 1)]).astype(np.int64)
        kept = np.flatnonzero(rng.random(n) < 0.8)
        kept = kept[kept >= 1]
        rows.append(Row(index=e, ids=ids, kept=kept))
        mask[e, kept] = True
        input_ids[e, :n] = torch.from_numpy(ids)
    seed = 11
    d = schema_defaults("distill")
    st_ = ExtractionSettings(compression=CompressionParams.from_config({**d, "format_version": version}), seed=seed,
                             token_budget=300, max_batch_size=2, head_chunk_rows=70)
    out = tmp_path / "shard.parquet"
    extract_shard(_Teacher(bank), rows, st_, shard_params(VOCAB, seed), out, 0, StopFlag())
    ds = CompressedLogitsDataset(str(out))
    items = sorted(ds, key=lambda it: it["index"])
    from_shard = ds.collate(items)["targets"]

    online = sparse_targets(bank, mask, seed=seed, format_version=version, input_ids=input_ids)
    _assert_same_targets(online, from_shard)
    assert online.vocab_size == VOCAB and LogitsShard(out).version == version
    # The schema's defaults are the online defaults (the version included, when it is the default).
    if version == d["format_version"]:
        _assert_same_targets(sparse_targets(bank, mask, seed=seed, input_ids=input_ids), from_shard)
    # Another seed gives other tail samples.
    other = sparse_targets(bank, mask, seed=seed + 1, format_version=version)
    assert not torch.equal(other.tail_ids, online.tail_ids)


def test_online_alignment_and_mask_forms():
    """[N, V] rows are positions 1…N; a [B, L] mask keeps token t from row t − 1, never token 0."""
    bank = _bank(2, seed=3)[:, :20]
    two_d = sparse_targets(bank[0, :10], seed=0)
    assert two_d.positions.tolist() == [list(range(1, 11))]
    full = sparse_targets(bank, None, seed=0)
    assert full.positions[0].tolist() == list(range(1, 20))
    # row t − 1 gave token t's nucleus: its top-1 is the argmax of that row
    rows = [r for r in range(19) if r != 3]  # row 3 is flat (a tie everywhere)
    assert torch.equal(full.nucleus_ids[0, rows, 0], bank[0, rows].argmax(-1))
    m = torch.zeros(2, 20, dtype=torch.bool)
    m[0, [0, 4, 7]] = True
    m[1, 19] = True
    part = sparse_targets(bank, m, seed=0)
    assert part.positions.tolist() == [[4, 7], [19, 0]] and part.mask.tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError, match="mask"):
        sparse_targets(bank, torch.ones(3, 20, dtype=torch.bool), seed=0)
    with pytest.raises(ValueError, match="format_version"):
        sparse_targets(bank, seed=0, format_version=4)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 70), min_size=1, max_size=4), st.integers(0, 2**31 - 1), st.sampled_from([2, 3]))
def test_compressed_records_round_trip_through_the_writer(tmp_path_factory, lengths, seed, version):
    """compress_rows output → compressed_records → build_table → reader: every kept token's
    ids, counts and positions come back per example (property-based over example lengths)."""
    gen = torch.Generator().manual_seed(seed)
    m = sum(lengths)
    logits = torch.randn(m, 500, generator=gen) * 3
    units = []
    for e, n in enumerate(lengths):
        units += [(e, b // 64, min(64, n - b)) for b in range(0, n, 64)]
    c = compress_rows(logits, BlockNoise(seed, units, gen), top_p=0.9, cap=12, k=5) if m else None
    positions = [np.arange(2, n + 2) for n in lengths]
    recs = compressed_records([c] if c is not None else [], positions, indices=[10 + e for e in range(len(lengths))])
    path = tmp_path_factory.mktemp("rec") / "s.parquet"
    write_logits_parquet(path, build_table(recs, 500, version=version, seed=seed), shard_params(500, seed))
    start = 0
    for e, ex in enumerate(LogitsShard(path)):
        n = lengths[e]
        assert ex.index == 10 + e and ex.positions.tolist() == positions[e].tolist()
        tc = c.top_counts[start:start + n].numpy() if n else np.zeros(0)
        assert ex.top_counts.tolist() == tc.tolist()
        if n:
            first = c.top_ids[start:start + n, 0].numpy()
            assert ex.top_ids[np.concatenate([[0], np.cumsum(tc)[:-1]])].tolist() == first.tolist()
        start += n


def test_docs_online_loop_runs_as_written(tmp_path):
    """docs/KD.md's online-distillation snippet, run as written: the loss goes down."""
    text = (REPO / "docs" / "KD.md").read_text()
    example = re.search(r"## Online distillation.*?```python\n(.*?)```", text, re.S)
    assert example, "docs/KD.md has no online distillation snippet"
    proc = subprocess.run([sys.executable, "-c", example.group(1)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(line.split()[1]) for line in proc.stdout.splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0], proc.stdout
