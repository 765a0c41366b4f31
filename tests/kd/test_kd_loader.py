"""The KD dataset and collate (logit_lineage.kd.dataset / targets) and the tokenizer check:
targets equal the reader's decoded distributions, padding is right, the loader feeds the
losses the same numbers the reader's unbiased estimate gives, work splits over workers,
streaming through `datasets` reads the same rows, and a student with another tokenizer or
chat template is refused in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.demo.conversations import make_dataset
from logit_lineage.demo.teacher import CHAT_TEMPLATE, train_tokenizer
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.logits import ExampleRecord, LogitsShard, build_table, write_logits_parquet
from logit_lineage.formats.reader import estimate_expectation, token_distributions
from logit_lineage.kd import (
    CompressedLogitsDataset,
    chat_template_fingerprint,
    check_student_tokenizer,
    collate,
    conversation_input_ids,
    kd_loss,
    tokenizer_fingerprint,
)
from logit_lineage.teacher.chat import MaskOptions, tokenize_conversation
from logit_lineage.teacher.compress import BlockNoise, compress_rows

SEED = 1337
TOP_P, CAP, K = 0.98, 100, 24


def compress_example(index: int, logits: torch.Tensor, positions, token_ids, *, top_p=TOP_P, cap=CAP,
                     k=K) -> ExampleRecord:
    """One example's record exactly as extraction makes it (block noise per example)."""
    m = logits.shape[0]
    c = compress_rows(logits, BlockNoise.for_example(SEED, index, m, torch.Generator()), top_p=top_p, cap=cap, k=k)
    tc, sc = c.top_counts.numpy(), c.sampled_counts.numpy()
    tk = np.arange(c.top_ids.shape[1]) < tc[:, None]
    sk = np.arange(c.sampled_ids.shape[1]) < sc[:, None]
    return ExampleRecord(
        index=index, positions=np.asarray(positions), token_ids=np.asarray(token_ids), top_counts=tc,
        top_ids=c.top_ids.numpy()[tk], top_logits=c.top_logits.numpy()[tk], sampled_counts=sc,
        sampled_ids=c.sampled_ids.numpy()[sk], sampled_logits=c.sampled_logits.numpy()[sk],
        logsumexp=c.logsumexp.numpy(), threshold=c.threshold.numpy())


def shard_params(vocab: int, **extra) -> dict:
    return {"vocab_size": vocab, "index_high_bits": high_bits_for_vocab(vocab), "top_p": TOP_P,
            "top_p_max_elements": CAP, "sampled_n": K, "seed": SEED, "teacher": "synthetic", **extra}


def synthetic_records(vocab: int, lengths, seed: int = 0, first_index: int = 0) -> list[ExampleRecord]:
    """Examples of given stored-token counts; logits peaked (Zipf-like) or flat, ids anywhere."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = []
    for e, n in enumerate(lengths):
        scale = torch.where(torch.rand(n, 1, generator=g) < 0.5, 6.0, 1.0)  # peaked rows and flat rows
        logits = torch.randn((n, vocab), generator=g) * scale
        positions = np.sort(rng.choice(np.arange(1, 3 * n + 2), n, replace=False))
        out.append(compress_example(first_index + e, logits, positions, rng.integers(0, vocab, n)))
    return out


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory):
    """A shard at V = 151,936 (2 high bits), examples of different lengths."""
    vocab = 151_936
    path = tmp_path_factory.mktemp("kd") / "shard-00000.parquet"
    write_logits_parquet(path, build_table(synthetic_records(vocab, [7, 1, 12, 3, 9]), vocab), shard_params(vocab))
    return path


def test_targets_equal_the_readers_decoded_distributions(big_shard):
    shard = LogitsShard(big_shard)
    items = list(CompressedLogitsDataset(big_shard))
    assert [it["index"] for it in items] == list(shard.indices)
    batch = collate(items, vocab_size=151_936)["targets"]
    for b, ex in enumerate(shard):
        dists = token_distributions(ex)
        assert int(batch.mask[b].sum()) == len(dists)
        for j, d in enumerate(dists):
            n, s = len(d.top_ids), len(d.sampled_ids)
            assert int(batch.positions[b, j]) == d.position and int(batch.token_ids[b, j]) == d.token_id
            assert int(batch.nucleus_counts[b, j]) == n and int(batch.tail_counts[b, j]) == s
            assert np.array_equal(batch.nucleus_ids[b, j, :n].numpy(), d.top_ids)
            assert np.allclose(batch.nucleus_probs[b, j, :n].numpy(), d.top_probs, rtol=1e-6)
            assert np.array_equal(batch.tail_ids[b, j, :s].numpy(), d.sampled_ids)
            assert np.allclose(batch.tail_weights[b, j, :s].numpy(), d.tail_weights, rtol=1e-6)
            assert np.allclose(np.exp(batch.tail_logprobs[b, j, :s].numpy()), d.sampled_probs, rtol=1e-5)
            assert float(batch.tail_mass[b, j]) == pytest.approx(max(0.0, 1.0 - d.nucleus_mass), abs=1e-12)
            assert float(batch.logsumexp[b, j]) == ex.logsumexp[j]
            # padding is zero
            assert not batch.nucleus_probs[b, j, n:].any() and not batch.nucleus_ids[b, j, n:].any()
            assert not batch.tail_weights[b, j, s:].any() and not batch.tail_ids[b, j, s:].any()
        assert not batch.nucleus_probs[b, len(dists):].any() and not batch.mask[b, len(dists):].any()


def test_loss_from_the_loader_equals_the_readers_unbiased_estimate(big_shard):
    """Per token, CE at T=1 = −(Σ_N p log s + Σ_S w log s): the reader's estimate_expectation of
    −log softmax(z) (and the exact-mass form: logsumexp(z) − the estimate of z)."""
    shard = LogitsShard(big_shard)
    ds = CompressedLogitsDataset(big_shard)
    batch = ds.collate(list(ds))
    targets = batch["targets"]
    seq = int(targets.positions.max()) + 1
    g = torch.Generator().manual_seed(9)
    student = torch.randn((targets.batch_size, seq, 151_936), generator=g)
    got = kd_loss(student, targets, kind="ce", reduction="none", chunk_rows=8).double()
    got_lse = kd_loss(student, targets, kind="ce", estimator="unbiased_exact_mass", reduction="none").double()
    want, want_lse = [], []
    for b, ex in enumerate(shard):
        for d in token_distributions(ex):
            z = student[b, d.position - 1].double()
            want.append(-estimate_expectation(d, torch.log_softmax(z, 0).numpy()))
            want_lse.append(float(torch.logsumexp(z, 0)) - estimate_expectation(d, z.numpy()))
    assert np.allclose(got.numpy(), want, rtol=1e-5, atol=1e-4)
    assert np.allclose(got_lse.numpy(), want_lse, rtol=1e-5, atol=1e-4)


def test_collate_pads_tokens_and_input_ids():
    vocab = 500
    recs = synthetic_records(vocab, [3, 5, 1], seed=4)
    items = []
    for r in recs:
        from logit_lineage.kd.targets import example_targets

        class _Ex:  # a DecodedExample-like view of the raw record (no quantization)
            index, positions, token_ids = r.index, r.positions, r.token_ids
            logsumexp, threshold = r.logsumexp, r.threshold
            top_counts, top_ids, top_logits = r.top_counts, r.top_ids, r.top_logits.astype(np.float64)
            sampled_counts, sampled_ids = r.sampled_counts, r.sampled_ids
            sampled_logits = r.sampled_logits.astype(np.float64)

        item = example_targets(_Ex)
        ids = np.zeros(int(r.positions.max()) + 2, dtype=np.int64)
        ids[r.positions] = r.token_ids
        item["input_ids"] = ids
        items.append(item)
    out = collate(items, pad_id=7, vocab_size=vocab)
    t = out["targets"]
    assert t.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5, [True] + [False] * 4]
    assert t.nucleus_ids.shape[:2] == (3, 5) and t.nucleus_ids.shape[2] == int(t.nucleus_counts.max())
    assert t.tail_ids.shape[2] == int(t.tail_counts.max()) <= K
    lengths = [len(it["input_ids"]) for it in items]
    assert out["input_ids"].shape == (3, max(lengths))
    assert out["attention_mask"].sum(1).tolist() == lengths
    for b, n in enumerate(lengths):
        assert out["input_ids"][b, :n].tolist() == items[b]["input_ids"].tolist()
        assert (out["input_ids"][b, n:] == 7).all()
    # student rows: b·L + position − 1, and the stored token sits at that position + 1 in the input
    rows = t.student_rows(out["input_ids"].shape[1])
    flat_ids = out["input_ids"].reshape(-1)
    assert torch.equal(flat_ids[rows + 1], t.token_ids[t.mask])
    # nothing of size [tokens, vocab]
    biggest = max(v.numel() for v in vars(t).values() if isinstance(v, torch.Tensor))
    assert biggest <= t.mask.numel() * max(CAP, K)


def test_workers_and_ranks_see_every_example_once(tmp_path):
    vocab = 300
    paths = []
    for s in range(3):
        p = tmp_path / f"shard-{s:05d}.parquet"
        write_logits_parquet(p, build_table(synthetic_records(vocab, [2, 3, 1, 2], seed=s, first_index=10 * s),
                                            vocab), shard_params(vocab))
        paths.append(p)
    everything = sorted(it["index"] for it in CompressedLogitsDataset(tmp_path))
    assert everything == sorted(10 * s + e for s in range(3) for e in range(4))
    # 2 workers over 3 shards split by shard; 2 ranks × 2 workers (4 > 3 shards) split by row
    for world in (1, 2):
        seen = []
        for rank in range(world):
            ds = CompressedLogitsDataset(paths, shuffle=True, seed=3, rank=rank, world_size=world)
            loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=ds.collate)
            seen += [int(i) for b in loader for i in b["index"]]
        assert sorted(seen) == everything, world
    ranks = [sorted(it["index"] for it in CompressedLogitsDataset(tmp_path, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == everything and not set(ranks[0]) & set(ranks[1])
    one, two = (list(it["index"] for it in CompressedLogitsDataset(paths, shuffle=True, seed=s)) for s in (1, 2))
    assert sorted(one) == sorted(two) == everything and one != two


def test_streaming_through_datasets_reads_the_same_rows(big_shard):
    local = list(CompressedLogitsDataset(big_shard))
    streamed = list(CompressedLogitsDataset("parquet", data_files=[str(big_shard)], stream_batch_rows=2))
    assert [it["index"] for it in streamed] == [it["index"] for it in local]
    for a, b in zip(local, streamed):
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), key


def test_shards_that_disagree_or_are_missing_are_refused(tmp_path, big_shard):
    other = tmp_path / "shard-00001.parquet"
    write_logits_parquet(other, build_table(synthetic_records(1000, [2]), 1000), shard_params(1000))
    with pytest.raises(LineageError) as err:
        CompressedLogitsDataset([big_shard, other])
    assert "vocab_size" in str(err.value) and str(other) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(LineageError, match="no such file or directory"):
        CompressedLogitsDataset(tmp_path / "nope.parquet")


# --- tokenizer / chat template fingerprints and input ids ---------------------------------------


@pytest.fixture(scope="module")
def tokenizer_and_data(tmp_path_factory):
    """The demo chain's tokenizer (BPE + chat template) on a few demo conversations, saved."""
    convs = make_dataset(24, seed=5, think_fraction=0.2)
    texts = [m["content"] for c in convs for m in c]
    tok = train_tokenizer(texts, vocab_size=300)
    root = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(root / "teacher")
    return tok, root / "teacher", [{"messages": c} for c in convs]


def _teacher_shard(path, tok, rows, params_extra=None):
    """A shard of the conversations' kept (assistant) tokens, as extraction would write it."""
    vocab = len(tok)
    g = torch.Generator().manual_seed(0)
    recs = []
    for index, row in enumerate(rows):
        ids, mask = tokenize_conversation(tok, row["messages"], MaskOptions(), f"row {index}")
        kept = np.nonzero(mask)[0]
        recs.append(compress_example(index, torch.randn((len(kept), vocab), generator=g) * 4, kept, ids[kept],
                                     cap=20, k=8))
    prints = {"tokenizer": tokenizer_fingerprint(tok), "chat_template": chat_template_fingerprint(tok),
              "dataset": "0" * 64}
    params = shard_params(vocab, fingerprints=prints, **(params_extra or {}))
    write_logits_parquet(path, build_table(recs, vocab), params)
    return params


def test_fingerprint_is_stable_across_save_and_reload(tokenizer_and_data):
    from transformers import AutoTokenizer

    tok, saved, _ = tokenizer_and_data
    again = AutoTokenizer.from_pretrained(saved)
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    assert chat_template_fingerprint(again) == chat_template_fingerprint(tok) == chat_template_fingerprint(CHAT_TEMPLATE)
    again.pad_token = again.eos_token  # runtime settings do not count
    again.model_max_length = 17
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    again.add_tokens(["<|new|>"])
    assert tokenizer_fingerprint(again) != tokenizer_fingerprint(tok)


def test_matching_student_trains_on_aligned_inputs(tmp_path, tokenizer_and_data):
    from transformers import AutoTokenizer

    tok, saved, rows = tokenizer_and_data
    path = tmp_path / "shard-00000.parquet"
    _teacher_shard(path, tok, rows)
    student_tok = AutoTokenizer.from_pretrained(saved)
    ds = CompressedLogitsDataset(path, student_tokenizer=student_tok,
                                 input_ids_fn=conversation_input_ids(student_tok, rows))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=ds.collate)
    batch = next(iter(loader))
    t = batch["targets"]
    rows_idx = t.student_rows(batch["input_ids"].shape[1])
    assert torch.equal(batch["input_ids"].reshape(-1)[rows_idx + 1], t.token_ids[t.mask])
    student = torch.randn((*batch["input_ids"].shape, len(tok)), requires_grad=True)
    loss = kd_loss(student, t)
    loss.backward()
    assert torch.isfinite(loss) and student.grad.abs().sum() > 0


def test_mismatched_tokenizer_or_template_is_refused_in_one_line(tmp_path, tokenizer_and_data):
    from transformers import AutoTokenizer

    tok, saved, rows = tokenizer_and_data
    path = tmp_path / "shard-00000.parquet"
    _teacher_shard(path, tok, rows)
    other = AutoTokenizer.from_pretrained(saved)
    other.add_tokens(["<|tool|>"])
    with pytest.raises(LineageError) as err:
        CompressedLogitsDataset(path, student_tokenizer=other)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "tokenizer sha256" in msg and "chat template" not in msg
    templ = AutoTokenizer.from_pretrained(saved)
    templ.chat_template = CHAT_TEMPLATE.replace("<|end|>", "<|end|>\n")
    with pytest.raises(LineageError, match="chat template") as err:
        CompressedLogitsDataset(path, student_tokenizer=templ)
    assert "\n" not in str(err.value) and "tokenizer sha256" not in str(err.value)
    CompressedLogitsDataset(path, student_tokenizer=templ, check_chat_template=False)  # opt out: ok
    # ids that do not match the stored tokens are refused when the example is read
    shifted = conversation_input_ids(templ, rows)
    ds = CompressedLogitsDataset(path, input_ids_fn=lambda i: np.roll(shifted(i), 1))
    with pytest.raises(LineageError, match="disagree with the stored tokens") as err:
        next(iter(ds))
    assert "\n" not in str(err.value)
    # a shard without fingerprints cannot be checked
    bare = tmp_path / "bare.parquet"
    write_logits_parquet(bare, build_table(synthetic_records(len(tok), [2]), len(tok)), shard_params(len(tok)))
    with pytest.raises(LineageError, match="no tokenizer fingerprint"):
        CompressedLogitsDataset(bare, student_tokenizer=tok)
    with pytest.raises(LineageError, match="does not match"):
        check_student_tokenizer({"fingerprints": {"tokenizer": "0" * 64}}, tok, source="x")
