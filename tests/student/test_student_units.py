"""The student chain's library without subprocesses: a tiny random teacher, a real shard
written by the extractor, the student built from the teacher, its losses, its training
loop, its files and the table."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.distill.extract import ExtractionSettings, StopFlag, extract_shard
from logit_lineage.formats.params import CompressionParams
from logit_lineage.kd.dataset import CompressedLogitsDataset
from logit_lineage.student import METHODS
from logit_lineage.student.data import batch_order, load_student_data, order_sha256, split_heldout
from logit_lineage.student.eval_file import check_eval
from logit_lineage.student.evaluate import evaluate_heldout
from logit_lineage.student.examples_file import read_examples, write_examples
from logit_lineage.student.forward import make_batch, rows_logits, teacher_rows_logits
from logit_lineage.student.model import (
    build_student,
    load_student,
    read_student_metadata,
    save_student,
    state_sha256,
    student_config,
)
from logit_lineage.student.table import summarize, summary_lines, table_rows
from logit_lineage.student.train import TrainSettings, method_loss, train_student
from logit_lineage.teacher.compress import reference_compress_row
from logit_lineage.teacher.data import Row

VOCAB = 64


def tiny_teacher():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # peaked next-token distributions, like a trained model's
        model.lm_head.weight.mul_(40.0)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A teacher, 40 conversations' rows and the shard the extractor writes for them."""
    root = tmp_path_factory.mktemp("student_units")
    teacher = tiny_teacher()
    rng = np.random.default_rng(0)
    # Conversations sampled from the teacher itself, so the true tokens follow its distribution.
    gen = torch.Generator().manual_seed(0)
    seqs = torch.randint(2, VOCAB, (40, 1), generator=gen)
    with torch.no_grad():
        for _ in range(27):
            probs = torch.softmax(teacher(input_ids=seqs).logits[:, -1].double(), -1)
            seqs = torch.cat([seqs, torch.multinomial(probs, 1, generator=gen)], 1)
    rows = []
    for index in range(40):
        n = int(rng.integers(10, 28))
        ids = seqs[index, :n].numpy().astype(np.int64)
        kept = np.arange(n // 3, n, dtype=np.int64)  # the "assistant" part
        rows.append(Row(index, ids, kept))
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=0.98, top_p_max_elements=20, sampled_n=8), seed=5, token_budget=512, max_batch_size=64,
                                  head_chunk_rows=256)
    shard = root / "shard-00000.parquet"
    params = {"vocab_size": VOCAB, "index_high_bits": 0, "top_p": 0.98, "top_p_max_elements": 20, "sampled_n": 8,
              "seed": 5, "teacher": "tiny"}
    extract_shard(teacher, rows, settings, params, shard, 0, StopFlag())
    by_index = {r.index: r.ids for r in rows}
    items = list(CompressedLogitsDataset([str(shard)], input_ids_fn=lambda i: by_index[i]))
    train, heldout = split_heldout(items, every=4, max_heldout=100)
    examples = root / "examples.parquet"
    write_examples(examples, train, heldout, {"vocab_size": VOCAB, "shards": [shard.name]})
    data = load_student_data(examples, [shard])
    return {"teacher": teacher, "rows": rows, "shard": shard, "examples": examples, "data": data, "root": root}


def test_student_is_a_smaller_llama_with_the_teachers_vocabulary(tiny):
    cfg = student_config(tiny["teacher"].config)
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size, cfg.intermediate_size) == (1, 2, 16, 32)
    assert cfg.vocab_size == VOCAB and cfg.head_dim == 8
    wide = student_config(tiny["teacher"].config, depth_fraction=1.0, width_fraction=1.0)
    assert (wide.num_hidden_layers, wide.hidden_size) == (2, 32)
    tiny_one = student_config(tiny["teacher"].config, depth_fraction=0.1, width_fraction=0.1)
    assert (tiny_one.num_hidden_layers, tiny_one.num_attention_heads) == (1, 1)


def test_train_settings_take_the_schemas_defaults():
    from snakemake.utils import validate

    from conftest import REPO

    filled = {}
    validate(filled, str(REPO / "workflow" / "schemas" / "student.schema.yaml"))
    settings = TrainSettings()
    for key in ("steps", "batch_size", "learning_rate", "warmup_steps", "weight_decay", "grad_clip", "precision"):
        assert getattr(settings, key) == filled[key], key


def test_same_seed_same_initial_weights():
    cfg = student_config(tiny_teacher().config)
    assert state_sha256(build_student(cfg, 3)) == state_sha256(build_student(cfg, 3))
    assert state_sha256(build_student(cfg, 3)) != state_sha256(build_student(cfg, 4))


def test_batch_order_is_seeded_epochs_of_permutations():
    a = batch_order(10, steps=7, batch_size=3, seed=1)
    assert a.shape == (7, 3)
    assert np.array_equal(a, batch_order(10, steps=7, batch_size=3, seed=1))
    assert not np.array_equal(a, batch_order(10, steps=7, batch_size=3, seed=2))
    flat = a.reshape(-1)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # each epoch once
    items = [{"index": 100 + i} for i in range(10)]
    assert order_sha256(a, items) == order_sha256(batch_order(10, steps=7, batch_size=3, seed=1), items)


def test_heldout_split_is_by_row_index(tiny):
    data = tiny["data"]
    held = [it["index"] for it in data.heldout]
    train = [it["index"] for it in data.train]
    assert held and all(i % 4 == 0 for i in held) and not any(i % 4 == 0 for i in train)
    assert len(held) + len(train) == len(tiny["rows"])
    items = data.train + data.heldout
    t, h = split_heldout(items, every=4, max_heldout=3, max_train=5)
    assert [it["index"] for it in h] == sorted(held)[:3] and len(t) == 5
    with pytest.raises(LineageError, match="no held-out example"):
        split_heldout([it for it in items if it["index"] % 4], every=4, max_heldout=3)


def test_examples_file_round_trip_and_refusals(tiny, tmp_path):
    listed, meta = read_examples(tiny["examples"])
    assert meta["format_version"] == 1 and len(listed) == 40
    split, ids = listed[0]
    assert split == "heldout" and np.array_equal(ids, tiny["rows"][0].ids)
    other = tmp_path / "other.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"index": [1]}), other)
    with pytest.raises(LineageError, match="no key 'logit_lineage.student_examples' in the parquet metadata"):
        read_examples(other)
    # ids that disagree with the shard's stored tokens are refused
    bad = tmp_path / "bad.parquet"
    data = tiny["data"]
    wrong = [dict(it, input_ids=np.roll(it["input_ids"], 1)) for it in data.train]
    write_examples(bad, wrong, data.heldout, {"vocab_size": VOCAB})
    with pytest.raises(LineageError, match="input ids disagree with the stored tokens"):
        load_student_data(bad, [tiny["shard"]])
    # the same shard given twice is refused by name, not counted as a shortfall
    with pytest.raises(LineageError, match="example \\d+ is in more than one of the 2 shards given"):
        load_student_data(tiny["examples"], [tiny["shard"], tiny["shard"]])


def test_records_are_aligned_with_the_teachers_rows(tiny):
    """The teacher's own logits, scored against its compressed records, have ~0 forward KL:
    the record for token t sits at the row t−1 that `make_batch` gives the student."""
    data, teacher = tiny["data"], tiny["teacher"]
    batch = make_batch(data.train[:8], pad_id=0, vocab_size=VOCAB, device="cpu")
    t = teacher_rows_logits(teacher, batch)
    targets = batch["targets"]
    assert float(method_loss("dense", t, targets, t)) == pytest.approx(0.0, abs=1e-6)
    assert abs(float(method_loss("compressed", t, targets))) < 1e-2  # tail sampling and quantization only
    # one row off, and the same records are far from the teacher
    shifted = teacher_rows_logits(teacher, {**batch, "rows": batch["rows"] - 1})
    assert float(method_loss("compressed", shifted, targets)) > 0.5


def test_compressed_loss_estimates_the_dense_loss(tiny):
    data, teacher = tiny["data"], tiny["teacher"]
    student = build_student(student_config(teacher.config), 0)
    batch = make_batch(data.train, pad_id=0, vocab_size=VOCAB, device="cpu")
    t = teacher_rows_logits(teacher, batch)
    with torch.no_grad():
        s = rows_logits(student, batch["input_ids"], batch["attention_mask"], batch["rows"])
    dense = float(method_loss("dense", s, batch["targets"], t))
    compressed = float(method_loss("compressed", s, batch["targets"]))
    assert compressed == pytest.approx(dense, rel=0.02)
    assert float(method_loss("sft", s, batch["targets"])) != pytest.approx(dense, rel=0.02)
    with pytest.raises(ValueError, match="needs the teacher's logits"):
        method_loss("dense", s, batch["targets"])


@pytest.mark.parametrize("method", METHODS)
def test_training_lowers_loss_and_heldout_kl(tiny, method):
    data, teacher = tiny["data"], tiny["teacher"]
    cfg = student_config(teacher.config)
    before = evaluate_heldout(build_student(cfg, 1), teacher, data.heldout, batch_size=8, vocab_size=VOCAB)
    student = build_student(cfg, 1)
    settings = TrainSettings(steps=25, batch_size=6, learning_rate=1e-2, warmup_steps=5, log_every=10)
    order = batch_order(len(data.train), steps=25, batch_size=6, seed=1)
    result = train_student(student, data.train, order, method, settings, device="cpu",
                           teacher=teacher if method == "dense" else None, vocab_size=VOCAB)
    after = evaluate_heldout(student, teacher, data.heldout, batch_size=8, vocab_size=VOCAB)
    assert result.steps == 25 and result.examples == 150
    assert (result.teacher_tokens > 0) == (method == "dense")
    assert result.tokens == sum(len(data.train[i]["positions"]) for i in order.reshape(-1))
    assert result.final_loss < result.losses[0][1]
    assert after["kl_to_teacher"] < before["kl_to_teacher"]
    assert after["tokens"] == sum(len(it["positions"]) for it in data.heldout)
    assert 0 <= after["top1_agree"] <= 1 and after["teacher_entropy"] > 0


def test_heldout_kl_split_at_the_teachers_nucleus(tiny):
    """With a nucleus the evaluation adds the KL beyond it (the part renormalised top-k targets
    never teach) and the mass each side puts there: the same sums as one over the extraction's
    own nucleus, the other figures unchanged, all zero for the teacher itself."""
    data, teacher = tiny["data"], tiny["teacher"]
    student = build_student(student_config(teacher.config), 3)
    top_p, cap = 0.9, 12
    plain = evaluate_heldout(student, teacher, data.heldout, batch_size=8, vocab_size=VOCAB)
    split = evaluate_heldout(student, teacher, data.heldout, batch_size=8, vocab_size=VOCAB, nucleus=(top_p, cap))
    assert {k: split[k] for k in plain} == plain
    assert split["nucleus"] == {"top_p": top_p, "max_elements": cap}
    beyond = teacher_mass = student_mass = 0.0
    for a in range(0, len(data.heldout), 8):
        batch = make_batch(data.heldout[a : a + 8], pad_id=0, vocab_size=VOCAB, device="cpu")
        with torch.no_grad():
            lt = torch.log_softmax(teacher_rows_logits(teacher, batch).double(), -1)
            ls = torch.log_softmax(rows_logits(student, batch["input_ids"], batch["attention_mask"],
                                               batch["rows"]).double(), -1)
        for row in range(lt.shape[0]):
            outside = torch.ones(VOCAB, dtype=torch.bool)
            nucleus, _, _ = reference_compress_row(lt[row], torch.rand(VOCAB, dtype=torch.float64),
                                                   top_p=top_p, cap=cap, k=4)
            outside[nucleus] = False
            p = lt[row].exp()
            beyond += float((p * (lt[row] - ls[row]))[outside].sum())
            teacher_mass += float(p[outside].sum())
            student_mass += float(ls[row].exp()[outside].sum())
    n = split["tokens"]
    assert split["kl_beyond_nucleus"] == pytest.approx(beyond / n, rel=1e-9, abs=1e-12)
    assert split["teacher_mass_beyond_nucleus"] == pytest.approx(teacher_mass / n, rel=1e-9)
    assert split["student_mass_beyond_nucleus"] == pytest.approx(student_mass / n, rel=1e-9)
    itself = evaluate_heldout(teacher, teacher, data.heldout, batch_size=8, vocab_size=VOCAB, nucleus=(top_p, cap))
    assert itself["kl_to_teacher"] == pytest.approx(0, abs=1e-9)
    assert itself["kl_beyond_nucleus"] == pytest.approx(0, abs=1e-9)
    assert itself["student_mass_beyond_nucleus"] == pytest.approx(itself["teacher_mass_beyond_nucleus"], rel=1e-9)


def test_training_is_deterministic_given_method_and_seed(tiny):
    data, teacher = tiny["data"], tiny["teacher"]
    cfg = student_config(teacher.config)
    order = batch_order(len(data.train), steps=6, batch_size=4, seed=2)
    settings = TrainSettings(steps=6, batch_size=4, learning_rate=1e-2)
    hashes = []
    for _ in range(2):
        student = build_student(cfg, 2)
        train_student(student, data.train, order, "compressed", settings, device="cpu", vocab_size=VOCAB)
        hashes.append(state_sha256(student))
    assert hashes[0] == hashes[1]
    with pytest.raises(ValueError, match="batch order has shape"):
        train_student(build_student(cfg, 2), data.train, order[:3], "sft", settings, device="cpu")
    with pytest.raises(ValueError, match="needs the teacher"):
        train_student(build_student(cfg, 2), data.train, order, "dense", settings, device="cpu")


def test_checkpoint_round_trip_and_refusal(tiny, tmp_path):
    cfg = student_config(tiny["teacher"].config)
    student = build_student(cfg, 7)
    path = tmp_path / "model.safetensors"
    save_student(student, path, method="topk", seed=7, steps=0)
    loaded, meta = load_student(path)
    assert meta["method"] == "topk" and meta["seed"] == "7"
    assert state_sha256(loaded) == state_sha256(student)
    first = path.read_bytes()
    save_student(student, path, method="topk", seed=7, steps=0)
    assert path.read_bytes() == first  # same weights, same bytes
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something-else", "format_version": "1"})
    with pytest.raises(LineageError, match="expected 'logit-lineage-student'"):
        read_student_metadata(other)


def _record(method, seed, kl, init="i", order="o", top1=0.5, shards=None):
    rec = {"format": "logit-lineage-student-eval", "format_version": 1, "method": method, "seed": seed,
           "checkpoint": f"{method}/{seed}", "student": {"parameters": 10},
           "training": {"steps": 5, "tokens": 50, "teacher_forward_tokens": 80 if method == "dense" else 0,
                        "final_loss": 0.1,
                        "data_order_sha256": order, "init_sha256": init},
           "heldout": {"examples": 3, "tokens": 30, "kl_to_teacher": kl, "ce": 1.0 + kl, "top1_agree": top1,
                       "teacher_ce": 1.0, "teacher_entropy": 1.1}}
    if shards is not None:
        rec["shards"] = shards
    return rec


def test_summary_gap_closed_and_pairing():
    kls = {"dense": (0.10, 0.12), "compressed": (0.11, 0.13), "topk": (0.15, 0.17), "sft": (0.30, 0.32)}
    records = [(f"{m}{s}", _record(m, s, kls[m][s - 1], init=f"init{s}", order=f"order{s}"))
               for m in reversed(METHODS) for s in (1, 2)]
    for _, rec in records:
        check_eval(rec)
    rows = table_rows(records)
    assert [(r["method"], r["seed"]) for r in rows][:3] == [("dense", 1), ("dense", 2), ("compressed", 1)]
    summary = summarize(rows)
    assert summary["methods"]["dense"]["kl_to_teacher_mean"] == pytest.approx(0.11)
    assert summary["methods"]["dense"]["kl_to_teacher_std"] == pytest.approx(np.std([0.10, 0.12], ddof=1))
    assert summary["gap_closed"]["compressed"] == pytest.approx((0.31 - 0.12) / (0.31 - 0.11))
    assert summary["gap_closed"]["topk"] == pytest.approx((0.31 - 0.16) / (0.31 - 0.11))
    assert summary["gap_closed_per_seed"]["compressed"]["values"] == pytest.approx([0.95, 0.95])
    goal = summary["goal"]
    assert goal["gap_closed_min"] == 0.95 and goal["power_z"] == 3.0
    assert goal["compressed_gap_closed"] == pytest.approx(0.95)
    # compressed is 0.01 above dense on both seeds: a difference the seeds show (z huge), so not close
    assert summary["versus_dense"]["compressed"]["values"] == pytest.approx([0.01, 0.01])
    assert goal["power"] == {"sft": True, "topk": True, "met": True}
    assert goal["close"]["compressed"]["indistinguishable"] is False and goal["met"] is False
    json.dumps(summary)
    # runs of one seed that started differently are not a paired comparison
    records[0] = ("x", _record("sft", 1, 0.3, init="other", order="order1"))
    with pytest.raises(LineageError, match="seed 1: runs differ in init_sha256"):
        table_rows(records)


# Three seeds; dense's KL spreads widely between seeds, the paired differences hardly at all.
DENSE = (0.10, 0.20, 0.30)
SEEDS = (1, 2, 3)


def _runs(offsets, top1=None):
    """Eval records of every method (and the compressed format variant "v3") at dense + offset."""
    records = []
    for key, delta in offsets.items():
        method, _, fmt = key.partition("/")
        shards = None if method in ("dense", "sft") else {"label": fmt or "main",
                                                           "bytes_per_token": 30.0 if fmt else 100.0}
        for i, s in enumerate(SEEDS):
            t1 = (top1 or {}).get(key, (0.5, 0.5, 0.5))[i]
            records.append((f"{key}{s}", _record(method, s, DENSE[i] + delta[i], init=f"init{s}", order=f"o{s}",
                                                 top1=t1, shards=shards)))
    return records


def test_summary_versus_dense_power_and_close():
    offsets = {"dense": (0.0, 0.0, 0.0), "compressed": (0.01, -0.01, 0.03), "compressed/v3": (0.02, 0.0, 0.04),
               "topk": (0.10, 0.12, 0.08), "sft": (1.00, 1.02, 0.98)}
    top1 = {"sft": (0.40, 0.41, 0.42)}
    summary = summarize(table_rows(_runs(offsets, top1)))
    versus = summary["versus_dense"]
    assert list(versus) == ["compressed", "compressed/v3", "topk", "sft"]  # the table's order
    se = 0.02 / math.sqrt(3)  # every group's per-seed differences: mean ± 0.02 (sample std 0.02)
    # KL seed means: dense 0.2, sft 1.2, so the gap is 1.0
    expected = {"compressed": (0.01, 0.99, 100.0), "compressed/v3": (0.02, 0.98, 30.0),
                "topk": (0.10, 0.90, 100.0), "sft": (1.00, 0.0, None)}
    for key, (mean, gap, size) in expected.items():
        e = versus[key]
        assert e["values"] == pytest.approx(list(offsets[key]))
        assert e["seeds"] == [1, 2, 3] and e["n_seeds"] == 3 and e["note"] is None
        assert e["mean"] == pytest.approx(mean) and e["se"] == pytest.approx(se)
        assert e["z"] == pytest.approx(mean / se) and e["gap_closed"] == pytest.approx(gap, abs=1e-12)
        assert e["bytes_per_token"] == size
        assert e["ce_delta"]["mean"] == pytest.approx(mean) and e["ce_delta"]["se"] == pytest.approx(se)  # ce = 1 + kl
    assert versus["compressed"]["z"] == pytest.approx(0.866, abs=1e-3)
    assert versus["topk"]["z"] == pytest.approx(8.660, abs=1e-3) and versus["sft"]["z"] == pytest.approx(86.60, abs=1e-2)
    assert versus["sft"]["top1_delta"] == {"mean": pytest.approx(-0.09), "se": pytest.approx(0.01 / math.sqrt(3))}
    assert versus["topk"]["top1_delta"] == {"mean": 0.0, "se": 0.0}
    goal = summary["goal"]
    assert goal["gap_closed_min"] == 0.95 and goal["power_z"] == 3.0
    assert goal["compressed_gap_closed"] == pytest.approx(0.99)
    assert goal["power"] == {"sft": True, "topk": True, "met": True}
    assert goal["close"] == {
        "compressed": {"gap_closed": pytest.approx(0.99), "z": pytest.approx(0.866, abs=1e-3), "closes_gap": True,
                       "indistinguishable": True, "met": True},
        "compressed/v3": {"gap_closed": pytest.approx(0.98), "z": pytest.approx(1.732, abs=1e-3),
                          "closes_gap": True, "indistinguishable": True, "met": True}}
    assert goal["met"] is True
    json.dumps(summary, allow_nan=False)
    lines = summary_lines(summary)
    assert ("compressed vs dense: Δ KL +0.0100 ± 0.0115 (paired SE, 3 seeds), z +0.866, gap closed 99.0 %, "
            "100.0 B/token") in lines
    assert "sft vs dense: Δ KL +1.0000 ± 0.0115 (paired SE, 3 seeds), z +86.6, gap closed 0.0 %" in lines
    assert "power (differs from dense by > 3 paired SE): sft met, topk met; met" in lines
    assert ("close: compressed/v3 closes ≥ 95 % of the gap (98.0 %) and is within 3 paired SE of dense: met"
            in lines)
    assert lines[-1] == "goal (power, and every compressed group close): met"

    # topk within noise of dense: the benchmark cannot tell it apart, the power is not there
    offsets["topk"] = (0.05, -0.05, 0.09)  # mean 0.03, sample std sqrt(0.0104 / 2)
    summary = summarize(table_rows(_runs(offsets)))
    assert summary["versus_dense"]["topk"]["z"] == pytest.approx(0.03 / (math.sqrt(0.0052) / math.sqrt(3)))
    assert summary["versus_dense"]["topk"]["z"] == pytest.approx(0.7206, abs=1e-4)
    goal = summary["goal"]
    assert goal["power"] == {"sft": True, "topk": False, "met": False}
    assert goal["close"]["compressed"]["met"] is True and goal["met"] is False
    lines = summary_lines(summary)
    assert "power (differs from dense by > 3 paired SE): sft met, topk NOT met; NOT met" in lines
    assert lines[-1] == "goal (power, and every compressed group close): NOT met"

    # a variant that closes the gap but sits 0.04 ± 0.0115 above dense (z 3.46): seen, so not close
    offsets["topk"], offsets["compressed/v3"] = (0.10, 0.12, 0.08), (0.04, 0.02, 0.06)
    close = summarize(table_rows(_runs(offsets)))["goal"]["close"]["compressed/v3"]
    assert close == {"gap_closed": pytest.approx(0.96), "z": pytest.approx(0.04 / se), "closes_gap": True,
                     "indistinguishable": False, "met": False}

    # a variant within noise that does not close 95 % of the gap is not close either
    offsets["compressed/v3"] = (0.02, 0.12, 0.04)  # mean 0.06, gap closed 0.94, sample std sqrt(0.0028)
    close = summarize(table_rows(_runs(offsets)))["goal"]["close"]["compressed/v3"]
    assert close["gap_closed"] == pytest.approx(0.94) and close["closes_gap"] is False
    assert close["z"] == pytest.approx(0.06 / (math.sqrt(0.0028) / math.sqrt(3)))
    assert close["z"] == pytest.approx(1.964, abs=1e-3)
    assert close["indistinguishable"] is True and close["met"] is False


def test_summary_splits_the_paired_kl_at_the_nucleus():
    """Where the runs split their KL at the same nucleus, versus_dense pairs each part: beyond
    it (what topk never teaches) and within it, the two adding up to the paired difference."""
    offsets = {"dense": (0.0, 0.0, 0.0), "topk": (0.01, -0.02, 0.03), "compressed/v3": (0.0, 0.01, 0.02)}
    beyond = {"dense": (0.05, 0.06, 0.05), "topk": (0.08, 0.09, 0.08), "compressed/v3": (0.05, 0.06, 0.05)}
    records = _runs(offsets)
    for name, rec in records:
        key, seed = name[:-1], int(name[-1])
        rec["heldout"]["kl_beyond_nucleus"] = beyond[key][SEEDS.index(seed)]
        rec["heldout"]["nucleus"] = {"top_p": 0.98, "max_elements": 16 if key == "compressed/v3" else 100}
    versus = summarize(table_rows(records))["versus_dense"]
    split = versus["topk"]["kl_split_delta"]
    assert split["beyond_nucleus"] == {"mean": pytest.approx(0.03), "se": pytest.approx(0.0, abs=1e-12)}
    assert split["within_nucleus"]["mean"] == pytest.approx(versus["topk"]["mean"] - 0.03)
    assert split["within_nucleus"]["se"] == pytest.approx(versus["topk"]["se"])
    assert "kl_split_delta" not in versus["compressed/v3"]  # another nucleus: not comparable
    line = next(x for x in summary_lines(summarize(table_rows(records))) if x.startswith("topk vs dense"))
    assert line.endswith("; beyond nucleus +0.0300 ± 0.0000, within nucleus -0.0233 ± 0.0145")
    plain = summarize(table_rows(_runs(offsets)))["versus_dense"]
    assert "kl_split_delta" not in plain["topk"]


def test_summary_versus_dense_zero_spread_and_missing_runs():
    # binary fractions: the differences are exact, so their spread is exactly 0
    exact = {"dense": (0.5, 0.25, 0.75), "compressed": (0.5, 0.25, 0.75), "topk": (0.75, 0.5, 1.0),
             "sft": (1.0, 0.75, 1.25)}
    records = [(f"{m}{s}", _record(m, s, exact[m][i], init=f"init{s}", order=f"o{s}"))
               for m in exact for i, s in enumerate(SEEDS)]
    summary = summarize(table_rows(records))
    versus = summary["versus_dense"]
    assert versus["compressed"]["mean"] == 0.0 and versus["compressed"]["se"] == 0.0
    assert versus["compressed"]["z"] is None and "identical to dense" in versus["compressed"]["note"]
    assert versus["sft"]["mean"] == 0.5 and versus["sft"]["z"] is None and "infinite" in versus["sft"]["note"]
    goal = summary["goal"]
    assert goal["power"] == {"sft": True, "topk": True, "met": True}  # the same difference every seed: |z| = inf
    assert goal["close"]["compressed"] == {"gap_closed": 1.0, "z": None, "closes_gap": True,
                                           "indistinguishable": True, "met": True}
    assert goal["met"] is True
    json.dumps(summary, allow_nan=False)  # valid JSON: no infinity written
    lines = summary_lines(summary)
    assert any(line.startswith("sft vs dense:") and "z +∞ (se 0)" in line for line in lines)
    assert any(line.startswith("compressed vs dense:") and "z 0 (identical on every seed)" in line for line in lines)

    # one seed: no standard error, nothing decided
    one = summarize(table_rows([r for r in records if r[1]["seed"] == 1]))
    assert one["versus_dense"]["topk"]["se"] is None and one["versus_dense"]["topk"]["z"] is None
    assert one["goal"]["power"] == {"sft": None, "topk": None, "met": None} and one["goal"]["met"] is None
    assert summary_lines(one)[-1] == "goal (power, and every compressed group close): undecided"
    # without dense: no group to compare, the goal is undecided
    summary = summarize(table_rows([r for r in records if r[1]["method"] != "dense"]))
    assert summary["versus_dense"] == {} and summary["goal"]["met"] is None
    assert summary["goal"]["close"]["compressed"]["met"] is None


def test_timings_table():
    from logit_lineage.student.table import timing_rows

    rows = [{"method": "sft", "format": "main", "seed": 1}, {"method": "dense", "format": "main", "seed": 1},
            {"method": "compressed", "format": "v3", "seed": 1}]
    rec = {"train_seconds": 4.0, "eval_seconds": 1.0, "load_seconds": 2.0, "steps": 8, "device": "cpu"}
    # a timings file without "format" (written before format variants) is main's
    timed = timing_rows(rows, [("a", dict(rec, method="dense", seed=1)), ("b", dict(rec, method="sft", seed=1)),
                               ("c", dict(rec, method="compressed", format="v3", seed=1, train_seconds=2.0))])
    assert [(t["method"], t["format"], t["steps_per_second"]) for t in timed] == [
        ("sft", "main", 2.0), ("dense", "main", 2.0), ("compressed", "v3", 4.0)]
    with pytest.raises(LineageError, match="no timings file for method dense format main seed 1"):
        timing_rows(rows[:2], [("b", dict(rec, method="sft", seed=1))])


def test_eval_record_refusals():
    rec = _record("dense", 1, 0.1)
    with pytest.raises(LineageError, match="key 'method' is 'distill'"):
        check_eval(dict(rec, method="distill"))
    with pytest.raises(LineageError, match="'heldout' lacks key"):
        check_eval(dict(rec, heldout={"kl_to_teacher": 0.1}))
    with pytest.raises(LineageError, match="format version 2"):
        check_eval(dict(rec, format_version=2))
