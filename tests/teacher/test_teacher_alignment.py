"""Extraction against teachers whose answers are known: next-token alignment and
logits equal to the model's own forward (final softcapping included)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from logit_lineage.distill.extract import ExtractionSettings, compress_batch
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.compress import Workspace
from logit_lineage.teacher.data import Row
from logit_lineage.teacher.load import decoder_hidden, head_logits

V = 32


def f(x):
    """The known teacher's next-token rule (a permutation of the vocabulary)."""
    return (5 * np.asarray(x) + 3) % V


@pytest.fixture(scope="module")
def successor_teacher():
    """A 1-layer Llama whose prediction after token x is f(x), with p ≈ 1."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=V, hidden_size=V, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(V) * 3)
        model.model.layers[0].self_attn.o_proj.weight.zero_()  # attention adds nothing
        model.model.layers[0].mlp.down_proj.weight.zero_()  # nor does the MLP
        head = torch.zeros(V, V)
        head[f(np.arange(V)), np.arange(V)] = 4.0
        model.lm_head.weight.copy_(head)
    return model


def settings(**kw):
    compression = dict(format_version=2, top_p=0.98, top_p_max_elements=100, sampled_n=4) | kw
    return ExtractionSettings(compression=CompressionParams(**compression), seed=3, token_budget=4096,
                              max_batch_size=64, head_chunk_rows=7)


def chain(start, n):
    ids = [start]
    for _ in range(n - 1):
        ids.append(int(f(ids[-1])))
    return np.array(ids)


def test_row_for_token_t_is_the_prediction_from_t_minus_1(successor_teacher):
    rows = []
    for i, (start, n) in enumerate([(1, 20), (7, 9), (30, 140)]):  # padding, several blocks/chunks
        ids = chain(start, n)
        rows.append(Row(index=i, ids=ids, kept=np.arange(1, n)))
    records = compress_batch(successor_teacher, rows, settings(), 0, Workspace(), torch.Generator())
    for row, rec in zip(rows, records):
        offs = np.concatenate([[0], np.cumsum(rec.top_counts)])
        top1 = np.array([rec.top_ids[offs[j] + np.argmax(rec.top_logits[offs[j]:offs[j + 1]])]
                         for j in range(rec.num_tokens)])
        np.testing.assert_array_equal(rec.positions, row.kept)
        np.testing.assert_array_equal(rec.token_ids, row.ids[row.kept])
        # The true prediction for token t is f(ids[t-1]) == ids[t]; an off-by-one would give ids[t+1].
        np.testing.assert_array_equal(top1, f(row.ids[row.kept - 1]))
        np.testing.assert_array_equal(top1, row.ids[row.kept])
        assert np.all(np.exp(rec.top_logits[offs[:-1]] - rec.logsumexp) > 0.9)


@pytest.fixture(scope="module")
def softcapped_teacher():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                       final_logit_softcapping=1.0, initializer_range=0.5)
    return Gemma2ForCausalLM(cfg).eval()


def test_softcapped_logits_equal_the_models_forward(softcapped_teacher):
    model = softcapped_teacher
    ids = torch.randint(0, 64, (24,), generator=torch.Generator().manual_seed(1)).numpy()
    row = Row(index=0, ids=ids, kept=np.arange(1, 24))
    # top_p 1 with cap = vocab keeps the whole distribution, so it can be compared entry by entry.
    (rec,) = compress_batch(model, [row], settings(top_p=1.0, top_p_max_elements=64, sampled_n=0), 0, Workspace(),
                            torch.Generator())
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=torch.from_numpy(ids)[None]).logits[0].double(), -1)
        hidden = decoder_hidden(model, torch.from_numpy(ids)[None], torch.ones(1, 24, dtype=torch.long))[0]
        raw = torch.log_softmax(model.lm_head(hidden).double(), -1)  # without the softcap
    offs = np.concatenate([[0], np.cumsum(rec.top_counts)])
    max_err, raw_gap = 0.0, 0.0
    for j, t in enumerate(row.kept):
        sl = slice(offs[j], offs[j + 1])
        assert rec.top_counts[j] == 64
        probs = np.exp(rec.top_logits[sl] - rec.logsumexp[j])
        expected = ref[t - 1].exp().numpy()[rec.top_ids[sl]]
        max_err = max(max_err, float(np.abs(probs - expected).max()))
        raw_gap = max(raw_gap, float(np.abs(raw[t - 1].exp().numpy()[rec.top_ids[sl]] - probs).max()))
    assert max_err < 1e-4
    assert raw_gap > 1e-2  # the raw lm-head output really differs: the cap matters here
    # And the same check the extractor runs on every shard accepts this model.
    with torch.no_grad():
        direct = model(input_ids=torch.from_numpy(ids)[None]).logits[0]
        assert float((head_logits(model, hidden) - direct).abs().max()) < 1e-5
