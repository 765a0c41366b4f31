"""`logit_lineage.kd.KDTrainer` / `KDDataCollator`: a student trained through
`transformers.Trainer` from compressed shards (local and streamed), gradient accumulation
weighting tokens as one big batch does, padded and too-small student vocabularies, and the
depth-pruned student copy."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

from hubserver.fixtures import hub_env, hub_server, hub_token  # noqa: F401
from logit_lineage.common.errors import LineageError
from logit_lineage.distill.extract import ExtractionSettings, StopFlag, extract_shard
from logit_lineage.formats.params import CompressionParams
from logit_lineage.kd import CompressedLogitsDataset, KDDataCollator, KDTrainer, dense_kd_loss, hard_label_loss, kd_loss
from logit_lineage.kd.losses import ESTIMATORS, KINDS
from logit_lineage.kd.targets import targets_from_compressed
from logit_lineage.kd.trainer import as_ordered_dataset
from logit_lineage.student.model import kept_layers, load_student, pruned_student, save_student
from logit_lineage.teacher.compress import BlockNoise, compress_rows
from logit_lineage.teacher.data import Row
from test_student_units import VOCAB, tiny_teacher

N_TRAIN, N_HELD, LENGTH = 48, 12, 28


def small_student(vocab: int = VOCAB, seed: int = 0, layers: int = 1):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                                        tie_word_embeddings=False, pad_token_id=0))


def training_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, learning_rate=1e-2,
                logging_steps=4, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    return TrainingArguments(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny teacher's own samples, their assistant part extracted into a training and a
    held-out shard, and the rows' full ids (for input_ids_fn)."""
    root = tmp_path_factory.mktemp("kd_trainer")
    teacher = tiny_teacher()
    gen = torch.Generator().manual_seed(1)
    seqs = torch.randint(2, VOCAB, (N_TRAIN + N_HELD, 1), generator=gen)
    with torch.no_grad():
        for _ in range(LENGTH - 1):
            probs = torch.softmax(teacher(input_ids=seqs).logits[:, -1].double(), -1)
            seqs = torch.cat([seqs, torch.multinomial(probs, 1, generator=gen)], 1)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(N_TRAIN + N_HELD):
        n = int(rng.integers(12, LENGTH + 1))  # varying lengths: varying token counts per example
        rows.append(Row(i, seqs[i, :n].numpy().astype(np.int64), np.arange(n // 3, n, dtype=np.int64)))
    cfg = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=0.98, top_p_max_elements=20, sampled_n=8), seed=5, token_budget=512, max_batch_size=64,
                             head_chunk_rows=256)
    params = {"vocab_size": VOCAB, "index_high_bits": 0, "top_p": 0.98, "top_p_max_elements": 20, "sampled_n": 8,
              "seed": 5, "teacher": "tiny"}
    train = [root / "train" / f"shard-{k:05d}.parquet" for k in range(2)]
    train[0].parent.mkdir()
    extract_shard(teacher, rows[: N_TRAIN // 2], cfg, params, train[0], 0, StopFlag())
    extract_shard(teacher, rows[N_TRAIN // 2: N_TRAIN], cfg, params, train[1], 1, StopFlag())
    held = root / "held" / "shard-00000.parquet"
    held.parent.mkdir()
    extract_shard(teacher, rows[N_TRAIN:], cfg, params, held, 0, StopFlag())
    ids = {r.index: r.ids for r in rows}
    (root / "ids.json").write_text(json.dumps({str(k): v.tolist() for k, v in ids.items()}))
    return {"teacher": teacher, "train": train, "held": held, "ids": ids, "root": root}


def datasets_of(tiny, **kw):
    fn = tiny["ids"].__getitem__
    return (CompressedLogitsDataset(tiny["train"], input_ids_fn=fn, **kw),
            CompressedLogitsDataset(tiny["held"], input_ids_fn=fn))


# --- training through transformers.Trainer --------------------------------------------------------


def test_plain_trainer_needs_what_kdtrainer_does_itself(tiny, tmp_path):
    """Plain Trainer on the dataset fails (no max_steps, then the collator loses 'index');
    KDTrainer needs neither max_steps nor remove_unused_columns=False."""
    from transformers import Trainer

    train, _ = datasets_of(tiny)
    with pytest.raises(ValueError, match="max_steps"):
        Trainer(model=small_student(), args=training_args(tmp_path), train_dataset=train,
                data_collator=train.collate).train()
    trainer = Trainer(model=small_student(), args=training_args(tmp_path, max_steps=1), train_dataset=train,
                      data_collator=train.collate)
    with pytest.raises(KeyError, match="index"):
        trainer.train()
    kd = KDTrainer(model=small_student(), args=training_args(tmp_path), train_dataset=train)
    assert kd.args.max_steps == math.ceil(N_TRAIN / 8) * 3  # 3 epochs (TrainingArguments' default) of 6 batches


def test_kdtrainer_lowers_heldout_kl_and_logs_kd_and_ce(tiny, tmp_path):
    train, held = datasets_of(tiny, shuffle=True)
    trainer = KDTrainer(model=small_student(), args=training_args(tmp_path, num_train_epochs=5), train_dataset=train,
                        eval_dataset=held, alpha=0.8)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    held_tokens = sum(len(it["positions"]) for it in held)
    assert before["eval_tokens"] == after["eval_tokens"] == held_tokens > 0
    assert after["eval_kl_to_teacher"] < 0.6 * before["eval_kl_to_teacher"], (before, after)
    assert after["eval_ce"] < before["eval_ce"] and after["eval_top1_agree"] > before["eval_top1_agree"]
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert logged and all("kd_loss" in e and "ce_loss" in e for e in logged)
    first, last = logged[0], logged[-1]
    assert last["kd_loss"] < first["kd_loss"] and last["ce_loss"] < first["ce_loss"]
    # alpha·KD + (1 − alpha)·CE is the loss (equal token counts per log window are not needed: token means)
    assert abs(0.8 * last["kd_loss"] + 0.2 * last["ce_loss"] - last["loss"]) < 0.15 * last["loss"]
    # Against the dense teacher the held-out KL is exact; the shards' estimate is close to it.
    exact = KDTrainer(model=trainer.model, args=training_args(tmp_path), eval_dataset=held,
                      teacher=tiny["teacher"]).evaluate()
    assert abs(exact["eval_kl_to_teacher"] - after["eval_kl_to_teacher"]) < 0.1 * exact["eval_kl_to_teacher"] + 0.02


@pytest.mark.parametrize("method", ["dense", "sft", "topk"])
def test_dense_teacher_sft_and_topk_train(tiny, tmp_path, method):
    from logit_lineage.student.train import method_trainer_args

    train, held = datasets_of(tiny, shuffle=True)
    trainer = KDTrainer(model=small_student(), args=training_args(tmp_path, num_train_epochs=2), train_dataset=train,
                        eval_dataset=held, **method_trainer_args(method, tiny["teacher"]))
    trainer.teacher = tiny["teacher"]  # exact held-out KL for every method
    before = trainer.evaluate()
    trainer.train()
    assert trainer.evaluate()["eval_kl_to_teacher"] < before["eval_kl_to_teacher"]
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert ("kd_loss" in logged[0]) == (method != "sft") and "ce_loss" in logged[0]


def test_workers_see_every_example_once_per_epoch(tiny, tmp_path):
    train, _ = datasets_of(tiny)
    trainer = KDTrainer(model=small_student(), args=training_args(tmp_path, dataloader_num_workers=2),
                        train_dataset=train)
    seen = [int(i) for batch in trainer.get_train_dataloader() for i in batch["index"]]
    assert sorted(seen) == list(range(N_TRAIN))


def test_bf16_autocast_trains(tiny, tmp_path):
    """bf16=True really runs the student's body in bfloat16 while it trains (accelerate's
    autocast around the model's forward, which KDTrainer calls for the hidden states)."""
    train, held = datasets_of(tiny)
    student = small_student()
    seen = set()
    student.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, out: seen.add((student.training, out.dtype)))
    trainer = KDTrainer(model=student, args=training_args(tmp_path, bf16=True, max_steps=6),
                        train_dataset=train, eval_dataset=held)
    before = trainer.evaluate()["eval_kl_to_teacher"]
    trainer.train()
    losses = [v for _, v in trainer.loss_history()]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert trainer.evaluate()["eval_kl_to_teacher"] < before
    assert (True, torch.bfloat16) in seen and (True, torch.float32) not in seen


@pytest.mark.parametrize("fused", [False, True])
def test_bf16_runs_the_head_at_the_stored_rows_in_bf16(tiny, tmp_path, fused):
    """Under bf16=True the head applied at the stored rows is a bfloat16 matmul, as inside the
    model's own forward under autocast (the head is most of a small student's compute): the
    row path is kept (no fall back to the full logits), the plain and the fused head see
    bfloat16 inputs, and the losses stay finite."""
    import logit_lineage.kd.trainer as trainer_module

    train, _ = datasets_of(tiny)
    items = sorted(train, key=lambda it: it["index"])[:8]
    order = np.arange(8).reshape(-1, 4)
    seen = []
    model = small_student(seed=3)
    model.lm_head.register_forward_hook(lambda m, i, out: seen.append((i[0].shape[0], out.dtype)))
    real_fused = trainer_module.kd_loss_from_hidden

    def spy(hidden, weight, *a, **kw):
        seen.append(("fused", hidden.dtype, weight.dtype))
        return real_fused(hidden, weight, *a, **kw)

    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=2, max_grad_norm=0.0, logging_steps=1,
                         bf16=True)
    trainer = KDTrainer(model=model, args=args, train_dataset=as_ordered_dataset(items, order), fused_head=fused,
                        optimizers=(opt, sched))
    trainer_module.kd_loss_from_hidden = spy
    try:
        trainer.train()
    finally:
        trainer_module.kd_loss_from_hidden = real_fused
    assert trainer._rows_ok is True
    stored = sum(len(it["positions"]) for it in items[:4])  # the first batch's stored tokens
    if fused:
        assert ("fused", torch.bfloat16, torch.bfloat16) in seen
        assert all(e[0] != stored for e in seen if e[0] != "fused")  # no [tokens, V] head call
    else:
        assert (stored, torch.bfloat16) in seen and all(dtype == torch.bfloat16 for _, dtype in seen)
    assert all(math.isfinite(v) for _, v in trainer.loss_history())


def test_the_datasets_split_wins_and_a_disagreeing_one_is_refused(tiny, tmp_path, monkeypatch):
    train, _ = datasets_of(tiny)
    trainer = KDTrainer(model=small_student(), args=training_args(tmp_path, max_steps=1), train_dataset=train)
    args_type = type(trainer.args)
    monkeypatch.setattr(args_type, "world_size", property(lambda self: 2))  # process 1 of a 2-process launch
    monkeypatch.setattr(args_type, "process_index", property(lambda self: 1))
    assert trainer._split_for_processes(train) and (train.rank, train.world_size) == (1, 2)
    assert {int(it["index"]) for it in train} == set(range(N_TRAIN // 2, N_TRAIN))  # its own shard
    other = CompressedLogitsDataset(tiny["train"], input_ids_fn=tiny["ids"].__getitem__, rank=0, world_size=2)
    with pytest.raises(LineageError, match="rank=0, world_size=2, but this is process 1 of 2"):
        trainer._split_for_processes(other)


DDP_RUN = """
import json, sys
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments
from logit_lineage.kd import CompressedLogitsDataset, KDTrainer
shards, held, ids_file, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
ids = {int(k): v for k, v in json.load(open(ids_file)).items()}
train = CompressedLogitsDataset(shards, input_ids_fn=ids.__getitem__)
heldout = CompressedLogitsDataset(held, input_ids_fn=ids.__getitem__)
torch.manual_seed(0)
student = LlamaForCausalLM(LlamaConfig(vocab_size=train.vocab_size, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4))
args = TrainingArguments(output_dir=out, per_device_train_batch_size=4, learning_rate=1e-2, num_train_epochs=2,
                         report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, ddp_backend="gloo")
trainer = KDTrainer(model=student, args=args, train_dataset=train, eval_dataset=heldout)
seen = sorted(int(i) for b in trainer.get_train_dataloader() for i in b["index"])
before = trainer.evaluate()
trainer.train()
after = trainer.evaluate()
Path(out).mkdir(parents=True, exist_ok=True)
Path(out, f"result-{args.process_index}.json").write_text(json.dumps({"rank": args.process_index, "world": args.world_size, "seen": seen,
                            "steps": trainer.state.global_step, "before": before["eval_kl_to_teacher"],
                            "after": after["eval_kl_to_teacher"], "tokens": after["eval_tokens"],
                            "head": float(student.lm_head.weight.detach().double().sum())}))
"""


def test_two_process_launch_splits_by_the_datasets_own_split(tiny, tmp_path):
    """torchrun with 2 CPU processes (gloo): each reads its own shard, DDP keeps the weights
    equal, the held-out metrics are summed over both processes' rows."""
    from conftest import subprocess_env

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_RUN)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), ",".join(map(str, tiny["train"])), str(tiny["held"]), str(tiny["root"] / "ids.json"),
         str(tmp_path / "out")], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one file per process: two processes' lines on one stdout pipe can interleave
    got = sorted((json.loads(p.read_text()) for p in (tmp_path / "out").glob("result-*.json")), key=lambda r: r["rank"])
    assert [(r["rank"], r["world"]) for r in got] == [(0, 2), (1, 2)]
    assert got[0]["seen"] == list(range(N_TRAIN // 2)) and got[1]["seen"] == list(range(N_TRAIN // 2, N_TRAIN))
    assert got[0]["steps"] == got[1]["steps"] == 2 * math.ceil(N_TRAIN / 2 / 4)
    assert got[0]["head"] == got[1]["head"] and got[0]["after"] == got[1]["after"] < got[0]["before"]
    _, held = datasets_of(tiny)
    assert got[0]["tokens"] == sum(len(it["positions"]) for it in held)


# --- gradient accumulation --------------------------------------------------------------------------


def _one_update(tiny, tmp_path, items, batch, accum):
    model = small_student(seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    order = np.arange(len(items)).reshape(-1, batch)
    args = training_args(tmp_path, per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
                         max_steps=1, max_grad_norm=0.0, logging_steps=1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    trainer = KDTrainer(model=model, args=args, train_dataset=as_ordered_dataset(items, order),
                        optimizers=(opt, sched))
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, trainer.loss_history()


def test_gradient_accumulation_weights_tokens_as_one_big_batch(tiny, tmp_path):
    train, _ = datasets_of(tiny)
    items = sorted(train, key=lambda it: it["index"])[:8]
    counts = [len(it["positions"]) for it in items]
    assert sum(counts[:4]) != sum(counts[4:])  # unequal halves: a mean of means would differ
    w_big, h_big = _one_update(tiny, tmp_path, items, 8, 1)
    w_acc, h_acc = _one_update(tiny, tmp_path, items, 4, 2)
    w_four, _ = _one_update(tiny, tmp_path, items, 2, 4)
    assert h_big[0][0] == h_acc[0][0] == 0 and abs(h_big[0][1] - h_acc[0][1]) < 1e-5
    init = {k: v.detach().clone() for k, v in small_student(seed=3).state_dict().items()}
    for k in w_big:
        step = (w_big[k] - init[k]).abs().max()
        torch.testing.assert_close(w_acc[k], w_big[k], atol=1e-6 + 1e-4 * float(step), rtol=0)
        torch.testing.assert_close(w_four[k], w_big[k], atol=1e-6 + 1e-4 * float(step), rtol=0)
    # What a mean of per-batch means would have done instead: a visibly different update.
    model = small_student(seed=3)
    collate = KDDataCollator(VOCAB)
    grads = []
    for half in (items[:4], items[4:]):
        model.zero_grad()
        b = collate(half)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        kd_loss(logits, b["targets"]).backward()
        grads.append(model.lm_head.weight.grad.clone())
    naive = init["lm_head.weight"] - (grads[0] + grads[1]) / 2
    assert (naive - w_big["lm_head.weight"]).abs().max() > 1e-3 * (w_big["lm_head.weight"] - init["lm_head.weight"]).abs().max()


# --- padded and smaller student vocabularies ------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), pad=st.integers(1, 40), temperature=st.sampled_from([1.0, 0.7, 2.0]))
def test_padded_vocab_same_loss_and_gradient_on_the_real_rows(seed, pad, temperature):
    """Student logits padded with −inf columns give the unpadded loss and gradient in every
    kind and estimator; the extra columns get gradient 0. With finite padded logits the
    forward kinds equal the dense loss against the teacher extended by zeros."""
    g = torch.Generator().manual_seed(seed)
    vocab, m = 48, 7
    teacher = torch.randn((m, vocab), generator=g) * 3
    c = compress_rows(teacher, BlockNoise.for_example(5, seed, m, torch.Generator()), top_p=0.9, cap=6, k=5)
    t = targets_from_compressed(c, vocab_size=vocab)
    z = torch.randn((m, vocab), generator=g)
    for kind in KINDS:
        for est in ESTIMATORS:
            a = z.clone().requires_grad_(True)
            b = torch.cat([z, torch.full((m, pad), -math.inf)], 1).requires_grad_(True)
            la = kd_loss(a, t, kind=kind, estimator=est, temperature=temperature)
            lb = kd_loss(b, t, kind=kind, estimator=est, temperature=temperature)
            la.backward()
            lb.backward()
            torch.testing.assert_close(lb, la, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(b.grad[:, :vocab], a.grad, atol=1e-6, rtol=1e-5)
            assert torch.all(b.grad[:, vocab:] == 0), (kind, est)
    a = z.clone().requires_grad_(True)
    b = torch.cat([z, torch.full((m, pad), -math.inf)], 1).requires_grad_(True)
    hard_label_loss(a, t).backward()
    hard_label_loss(b, t).backward()
    torch.testing.assert_close(b.grad[:, :vocab], a.grad)
    # Finite padded logits: the teacher gives the extra ids probability 0, the student pays for its mass there.
    zp = torch.cat([z, torch.randn((m, pad), generator=g)], 1).double()
    ls, lt = torch.log_softmax(zp / temperature, -1), torch.log_softmax(teacher.double() / temperature, -1)
    ce = -(lt.exp() * ls[:, :vocab]).sum(-1) * temperature**2
    want = {"ce": ce.mean(), "forward_kl": (ce + (lt.exp() * lt).sum(-1) * temperature**2).mean()}
    for kind, value in want.items():
        torch.testing.assert_close(dense_kd_loss(zp, teacher.double(), kind=kind, temperature=temperature), value)
        torch.testing.assert_close(  # a teacher whose extra ids are −inf logits: the same
            dense_kd_loss(zp, torch.cat([teacher, torch.full((m, pad), -math.inf)], 1).double(), kind=kind,
                          temperature=temperature), value)
    assert float(dense_kd_loss(zp, teacher, kind="forward_kl")) > float(dense_kd_loss(z, teacher, kind="forward_kl"))


def test_padded_student_trains_and_smaller_is_refused_in_one_line(tiny, tmp_path):
    train, held = datasets_of(tiny)
    padded = small_student(vocab=VOCAB + 64)
    trainer = KDTrainer(model=padded, args=training_args(tmp_path, max_steps=12), train_dataset=train,
                        eval_dataset=held)
    b = KDDataCollator(VOCAB)(sorted(held, key=lambda it: it["index"])[:4])

    def extra_mass():
        with torch.no_grad():
            logits = padded(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            return float(torch.softmax(logits, -1)[..., VOCAB:].sum(-1).mean())

    before_mass, before = extra_mass(), trainer.evaluate()["eval_kl_to_teacher"]
    trainer.train()
    assert trainer.evaluate()["eval_kl_to_teacher"] < before
    assert extra_mass() < 0.5 * before_mass  # forward KL pushes the teacher's zero-probability ids down
    with pytest.raises(LineageError) as err:
        KDTrainer(model=small_student(vocab=VOCAB - 1), args=training_args(tmp_path), train_dataset=train)
    msg = str(err.value)
    assert "\n" not in msg and f"{VOCAB - 1} ids" in msg and f"teacher's has {VOCAB}" in msg, msg


# --- pruned students --------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
def test_pruned_copy_at_depth_one_is_the_teacher(tmp_path, tied):
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2,
                                           tie_word_embeddings=tied)).eval()
    ids = torch.randint(0, VOCAB, (3, 11))
    with torch.no_grad():
        want = teacher(input_ids=ids).logits
        assert torch.equal(pruned_student(teacher, 1.0)(input_ids=ids).logits, want)
        half = pruned_student(teacher, 0.6)
    assert kept_layers(5, 0.6) == [0, 2, 4] and half.config.num_hidden_layers == 3
    for new, old in enumerate([0, 2, 4]):
        for (name, p), (_, q) in zip(half.model.layers[new].named_parameters(),
                                     teacher.model.layers[old].named_parameters()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    assert torch.equal(half.lm_head.weight, teacher.lm_head.weight)
    assert torch.equal(half.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    assert torch.equal(half.model.norm.weight, teacher.model.norm.weight)
    save_student(half, tmp_path / "s.safetensors", method="dense", seed=1, steps=0)
    again, _ = load_student(tmp_path / "s.safetensors")
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, half(input_ids=ids).logits)
    assert (again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()) == tied


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), f=st.floats(0.01, 1.0))
def test_kept_layers_are_evenly_spaced_first_and_last(n, f):
    keep = kept_layers(n, f)
    k = min(n, max(1, round(n * f)))
    assert len(keep) == k and keep == sorted(set(keep)) and keep[0] == 0
    if k > 1:
        assert keep[-1] == n - 1
        gaps = np.diff(keep)
        assert gaps.max() - gaps.min() <= 1
    with pytest.raises(LineageError, match="depth_fraction"):
        kept_layers(n, 0.0)


# --- Hub streaming ----------------------------------------------------------------------------------


STREAM_TRAIN = """
import json, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments
from logit_lineage.kd import CompressedLogitsDataset, KDTrainer
repo, held, ids_file, out = sys.argv[1:]
ids = {int(k): v for k, v in json.load(open(ids_file)).items()}
train = CompressedLogitsDataset(repo, input_ids_fn=ids.__getitem__, shuffle=True, buffer_size=16)
heldout = CompressedLogitsDataset(held, input_ids_fn=ids.__getitem__)
torch.manual_seed(0)
student = LlamaForCausalLM(LlamaConfig(vocab_size=train.vocab_size, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4))
args = TrainingArguments(output_dir=out, per_device_train_batch_size=8, learning_rate=1e-2, max_steps=24,
                         report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)
try:
    KDTrainer(model=student, args=TrainingArguments(output_dir=out, use_cpu=True, report_to="none"),
              train_dataset=train)
except Exception as exc:
    no_steps = str(exc)
trainer = KDTrainer(model=student, args=args, train_dataset=train, eval_dataset=heldout)
before = trainer.evaluate()["eval_kl_to_teacher"]
trainer.train()
print(json.dumps({"before": before, "after": trainer.evaluate()["eval_kl_to_teacher"], "no_steps": no_steps,
                  "steps": trainer.state.global_step}))
"""


def test_kdtrainer_trains_from_hub_streaming(tiny, tmp_path, hub_server, hub_env):
    import os

    from logit_lineage.hub.settings import HubSettings
    from test_hub_publish import REPO_ID, _publish

    settings_ = HubSettings(repo_id=REPO_ID, endpoint=hub_server.url, backoff_seconds=0.01, retries=1)
    _publish(settings_, tiny["train"])
    env = {**os.environ, **hub_env, "HF_DATASETS_OFFLINE": "0", "HF_HUB_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-c", STREAM_TRAIN, REPO_ID, str(tiny["held"]), str(tiny["root"] / "ids.json"),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["steps"] == 24 and got["after"] < 0.7 * got["before"], got
    assert "streamed and has no length: set TrainingArguments(max_steps=" in got["no_steps"]


# --- docs/KD.md's Trainer and collator examples on the demo shards ------------------------------------


def kd_md_example(heading: str) -> str:
    """The first python block under a docs/KD.md heading."""
    import re

    from conftest import REPO

    found = re.search(rf"{re.escape(heading)}\n.*?```python\n(.*?)```", (REPO / "docs" / "KD.md").read_text(), re.S)
    assert found, heading
    return found.group(1)


@pytest.fixture(scope="module")
def demo_results(demo_inputs, tmp_path_factory):
    """The default run's layout (results/demo/teacher, results/demo/conversations.parquet,
    results/distill/logits/) with two shards extracted by the distillation chain's scripts from the demo inputs."""
    from conftest import plan_demo_shards, run_script

    root = tmp_path_factory.mktemp("kd_md")
    (root / "results" / "demo").mkdir(parents=True)
    (root / "results" / "demo" / "teacher").symlink_to(demo_inputs["teacher"])
    (root / "results" / "demo" / "conversations.parquet").symlink_to(demo_inputs["dataset"])
    work, logits = root / "work", root / "results" / "distill" / "logits"
    work.mkdir()
    logits.mkdir(parents=True)
    src = plan_demo_shards(demo_inputs, work)
    for i in range(2):
        rows = work / f"rows-{i}.parquet"
        run_script("select_shard.py", "--plan", str(work / "plan.parquet"), "--shard", str(i), "--output", str(rows),
                   check=True)
        run_script("extract_logits.py", *src, "--shard", str(rows), "--output", str(logits / f"shard-{i:05d}.parquet"),
                   "--token-budget", "1200", "--threads", "1", check=True)
    return root


def test_kd_md_trainer_and_collator_examples_run_as_written(demo_results):
    """The Trainer example trains a student on the demo shards and lowers its held-out KL;
    the collator example then runs a hand-written loop on the same objects."""
    from conftest import subprocess_env

    code = kd_md_example("## Training with `transformers.Trainer`") + kd_md_example("### The collator without the trainer")
    proc = subprocess.run([sys.executable, "-c", code], cwd=demo_results, env=subprocess_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kl = [line for line in proc.stdout.splitlines() if line.startswith("held-out KL")]
    assert len(kl) == 1, proc.stdout[-2000:]
    before, after = float(kl[0].split()[2]), float(kl[0].split()[4])
    assert after < 0.8 * before, kl
    assert any(line.startswith("collator loop 5 steps") for line in proc.stdout.splitlines()), proc.stdout[-2000:]


# --- the gradient yardstick -------------------------------------------------------------------------


def test_gradient_yardstick_tells_the_unbiased_target_from_topk(tiny):
    from logit_lineage.kd.yardstick import gradient_yardstick

    train, _ = datasets_of(tiny)
    items = sorted(train, key=lambda it: it["index"])
    collate = KDDataCollator(VOCAB)
    batches = [collate(items[i:i + 4]) for i in range(0, N_TRAIN, 4)]
    student = small_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    got = gradient_yardstick(student, tiny["teacher"], batches)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(p.grad is None for p in student.parameters())
    u, t = got["unbiased"], got["topk"]
    assert u["batches"] == t["batches"] == N_TRAIN // 4
    assert u["cosine"] > 0.999 and t["cosine"] < u["cosine"]
    assert u["relative_bias"] < 2.5 * u["relative_bias_se"]  # unbiased: a bias of the order of its noise
    assert t["relative_bias"] > 2 * t["relative_bias_se"] and t["relative_bias"] > 4 * u["relative_bias"]
    assert 0 <= u["excess_variance"] < t["excess_variance"]
    with pytest.raises(ValueError, match="at least 2 batches"):
        gradient_yardstick(student, tiny["teacher"], batches[:1])


@pytest.mark.parametrize("kind,alpha", [("forward_kl", 1.0), ("forward_kl", 0.7), ("reverse_kl", 0.5)])
def test_fused_head_gives_the_update_of_the_full_logits(tiny, tmp_path, kind, alpha):
    """fused_head=True (kd_loss_from_hidden and the fused hard-label form on the last hidden
    states, no [tokens, V] logits) makes the same update as the full-logit path."""
    train, _ = datasets_of(tiny)
    items = sorted(train, key=lambda it: it["index"])[:8]
    order = np.arange(8).reshape(-1, 4)
    results = []
    for fused in (False, True):
        model = small_student(seed=3)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=2, max_grad_norm=0.0, logging_steps=1)
        trainer = KDTrainer(model=model, args=args, train_dataset=as_ordered_dataset(items, order), kind=kind,
                            alpha=alpha, fused_head=fused, optimizers=(opt, sched))
        trainer.train()
        results.append(({k: v.detach().clone() for k, v in model.state_dict().items()}, trainer.loss_history()))
    (w_full, h_full), (w_fused, h_fused) = results
    init = {k: v.detach().clone() for k, v in small_student(seed=3).state_dict().items()}
    assert [round(v, 4) for _, v in h_full] == [round(v, 4) for _, v in h_fused]
    for k in w_full:
        step = float((w_full[k] - init[k]).abs().max())
        torch.testing.assert_close(w_fused[k], w_full[k], atol=1e-6 + 1e-4 * step, rtol=0)
