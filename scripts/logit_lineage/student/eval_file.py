"""One student run's record (`student/<method>/seed-<S>/eval.json`).

    {
      "format": "logit-lineage-student-eval", "format_version": 1,
      "method": "dense|compressed|topk|sft", "seed": int, "checkpoint": "<path as given>",
      "student": {"num_layers", "hidden_size", "num_heads", "intermediate_size", "vocab_size", "parameters"},
      "training": {"steps", "batch_size", "learning_rate", "warmup_steps", "weight_decay", "grad_clip",
                   "train_examples", "tokens", "examples", "teacher_forward_tokens", "final_loss",
                   "loss_curve": [[step, loss], ...], "data_order_sha256", "init_sha256", "device"},
      "heldout": {"examples", "tokens", "kl_to_teacher", "ce", "top1_agree", "teacher_ce", "teacher_entropy",
                  optional: "kl_beyond_nucleus", "teacher_mass_beyond_nucleus", "student_mass_beyond_nucleus",
                  "nucleus": {"top_p", "max_elements"}}
    }

`tokens`: stored (assistant) tokens trained on, summed over steps; `teacher_forward_tokens`:
padded tokens the teacher ran on during training (dense only; the other targets come from
files). `data_order_sha256` and `init_sha256` are equal for every method of a seed: the
same batches, the same initial weights. The optional held-out keys split the KL at the
teacher's nucleus of the run's shards (logit_lineage.student.evaluate). No wall times: a record depends on its inputs
alone, so a rerun (or the same run on SLURM) writes the same bytes; times are in the job's
log and benchmark file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from logit_lineage.common.atomic import write_json
from logit_lineage.common.errors import LineageError
from logit_lineage.common.json_file import read_json
from logit_lineage.formats.envelope import check_envelope
from logit_lineage.student import METHODS

FORMAT = "logit-lineage-student-eval"
FORMAT_VERSION = 1
REQUIRED = ("method", "seed", "checkpoint", "student", "training", "heldout")
TRAINING_KEYS = ("steps", "tokens", "teacher_forward_tokens", "final_loss", "data_order_sha256", "init_sha256")
HELDOUT_KEYS = ("examples", "tokens", "kl_to_teacher", "ce", "top1_agree", "teacher_ce", "teacher_entropy")


def write_eval(path: str | Path, record: dict[str, Any]) -> None:
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, **record}
    check_eval(record, path)
    write_json(path, record)


def read_eval(path: str | Path) -> dict[str, Any]:
    record = read_json(path, "student evaluation file")
    check_eval(record, path)
    return record


def check_eval(record: Any, path=None) -> None:
    check_envelope(record, path=path, format=FORMAT, version=FORMAT_VERSION, what="student evaluation file")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise LineageError(f"missing key(s) {', '.join(missing)}", path=path)
    if record["method"] not in METHODS:
        raise LineageError(f"key 'method' is {record['method']!r}, expected one of {METHODS}", path=path)
    for section, keys in (("training", TRAINING_KEYS), ("heldout", HELDOUT_KEYS)):
        block = record[section]
        if not isinstance(block, dict):
            raise LineageError(f"key '{section}' must be an object", path=path)
        lacking = [k for k in keys if k not in block]
        if lacking:
            raise LineageError(f"'{section}' lacks key(s) {', '.join(lacking)}", path=path)
    held = record["heldout"]
    for key in ("kl_to_teacher", "ce", "teacher_ce", "teacher_entropy"):
        if not (isinstance(held[key], (int, float)) and math.isfinite(held[key])):
            raise LineageError(f"heldout.{key} = {held[key]!r} is not a finite number", path=path)
    if not 0.0 <= float(held["top1_agree"]) <= 1.0:
        raise LineageError(f"heldout.top1_agree = {held['top1_agree']} is not in [0, 1]", path=path)
    if float(held["kl_to_teacher"]) < -1e-9:
        raise LineageError(f"heldout.kl_to_teacher = {held['kl_to_teacher']} is negative", path=path)
