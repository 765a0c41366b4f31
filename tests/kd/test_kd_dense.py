"""Dense targets computed once: `kd.dense.DenseLogits` over dense dumps of every kept token
gives the teacher's own logits, and training or evaluating against it is training or
evaluating against the teacher model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.fidelity.dense import dense_logits, sample_tokens
from logit_lineage.formats.dense_dump import DenseEntry, write_dense_dump
from logit_lineage.kd import DenseLogits
from logit_lineage.student.evaluate import evaluate_heldout
from logit_lineage.student.forward import make_batch, teacher_rows_logits
from logit_lineage.student.model import build_student, student_config
from logit_lineage.student.train import TrainSettings, train_student
from test_student_units import VOCAB, tiny  # noqa: F401  (the module's fixture)


def dump_all(teacher, rows, path, *, dtype="float32", skip: int = 0):
    """What dump_dense_logits.py --all-tokens writes: every kept token (less the first `skip`)."""
    picks = sample_tokens(rows, sum(len(r.kept) for r in rows), seed=0)[skip:]
    logits = dense_logits(teacher, rows, picks, token_budget=256, max_batch_size=8, pad_id=0)
    entries = [DenseEntry(sample_idx=p.row, example_idx=rows[p.row].index, position=p.position, logits=z)
               for p, z in zip(picks, logits)]
    write_dense_dump(path, entries, dtype=dtype)
    return path


@pytest.fixture(scope="module")
def dumped(tiny):  # noqa: F811
    return DenseLogits([dump_all(tiny["teacher"], tiny["rows"], tiny["root"] / "dense.json.gz")])


def test_rows_are_the_teachers_logits_in_the_targets_order(tiny, dumped):  # noqa: F811
    data = tiny["data"]
    for items in (data.train[:8], data.heldout):
        batch = make_batch(items, pad_id=0, vocab_size=VOCAB, device="cpu")
        ours = dumped.rows(batch["index"], batch["targets"])
        ref = teacher_rows_logits(tiny["teacher"], batch)
        assert ours.shape == ref.shape == (batch["targets"].num_tokens, VOCAB)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)
    assert len(dumped) == sum(len(r.kept) for r in tiny["rows"])


def test_float16_dump_rounds_the_logits_only(tiny):  # noqa: F811
    half = DenseLogits([dump_all(tiny["teacher"], tiny["rows"], tiny["root"] / "half.json.gz", dtype="float16")])
    batch = make_batch(tiny["data"].heldout, pad_id=0, vocab_size=VOCAB, device="cpu")
    ref = teacher_rows_logits(tiny["teacher"], batch)
    got = half.rows(batch["index"], batch["targets"])
    assert got.dtype == torch.float32
    assert float((got - ref).abs().max()) <= float(ref.abs().max()) * 2.0**-11 + 1e-6  # float16's rounding
    assert float((got - ref).abs().max()) > 0


def test_a_token_with_no_entry_is_refused_in_one_line(tiny):  # noqa: F811
    partial = DenseLogits([dump_all(tiny["teacher"], tiny["rows"], tiny["root"] / "partial.json.gz", skip=1)])
    first = tiny["rows"][0]
    batch = make_batch([it for it in tiny["data"].train + tiny["data"].heldout if it["index"] == first.index],
                       pad_id=0, vocab_size=VOCAB, device="cpu")
    with pytest.raises(LineageError, match=rf"no logits for example {first.index} position {int(first.kept[0])}") as exc:
        partial.rows(batch["index"], batch["targets"])
    assert "\n" not in str(exc.value)
    with pytest.raises(LineageError, match="in two dumps"):
        DenseLogits([tiny["root"] / "dense.json.gz", tiny["root"] / "partial.json.gz"])


def test_training_and_evaluating_on_the_dumps_is_training_on_the_teacher(tiny, dumped):  # noqa: F811
    """Method dense through KDTrainer: the dumped logits and the teacher model give the same
    student (same steps, same batches), and the same held-out metrics."""
    data, teacher = tiny["data"], tiny["teacher"]
    settings = TrainSettings(steps=3, batch_size=4, learning_rate=3e-3, warmup_steps=1, weight_decay=0.0,
                             grad_clip=1.0, log_every=1)
    order = np.arange(12).reshape(3, 4) % len(data.train)
    students = []
    for reference in (teacher, dumped):
        student = build_student(student_config(teacher.config), 0)
        result = train_student(student, data.train, order, "dense", settings, device="cpu", teacher=reference,
                               vocab_size=VOCAB, heldout=data.heldout, curve_every=3, eval_batch_size=8)
        students.append((student, result))
    (a, ra), (b, rb) = students
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4, msg=name)
    assert ra.teacher_tokens > 0 and rb.teacher_tokens == 0  # the dumps spare the teacher's forward
    assert [s for s, _ in rb.curve] == [0, 3]  # exact held-out KL from the dumps
    ev_model = evaluate_heldout(b, teacher, data.heldout, batch_size=8, vocab_size=VOCAB)
    ev_dump = evaluate_heldout(b, dumped, data.heldout, batch_size=8, vocab_size=VOCAB)
    for key in ("kl_to_teacher", "ce", "top1_agree", "teacher_entropy"):
        assert ev_dump[key] == pytest.approx(ev_model[key], rel=1e-5, abs=1e-7)
    assert rb.curve[-1][1] == pytest.approx(ev_dump["kl_to_teacher"], rel=1e-4)
