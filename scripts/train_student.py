#!/usr/bin/env python
"""Train one student (one method, one seed) and evaluate it on the held-out examples.

The student (--init) is either a Llama built from the teacher's config (scratch:
--depth-fraction of its layers, --width-fraction of its heads and MLP width, the same
vocabulary, random weights from --seed) or a depth-pruned copy of the teacher (pruned:
--depth-fraction of its layers, evenly spaced with the first and last kept, every kept
weight copied, width unchanged; --width-fraction is not used). It is trained through
logit_lineage.kd.KDTrainer (a transformers.Trainer) for --steps steps of --batch-size examples of the --examples list (from
prepare_student_data.py) in the seed's order, on the stored (assistant) positions only,
with one of four targets (--method):

\b
  dense       forward KL to the teacher's full distribution (--dense dumps, or a teacher
              forward on the fly without them)
  compressed  forward KL to the shards' records, unbiased estimator (logit_lineage.kd)
  topk        forward KL to the shards' nucleus renormalised, tail dropped
  sft         cross-entropy on the true tokens

Then, on the held-out examples, the student's KL(teacher ‖ student), cross-entropy and top-1
agreement per stored token are measured against the teacher's dense distributions: read from
--dense (dense dumps of every kept token, dump_dense_logits.py --all-tokens: the teacher runs
once for every seed and method) or, without it, computed on the fly; the KL is also split at
the teacher's nucleus as the shards define it (top_p, at most top_p_max_elements ids: what
`topk` keeps), with the mass each puts beyond it. With --dense the
learning curve (--curve-every) is the exact held-out KL too, not the shards' estimate. Writes --checkpoint (safetensors, config in its metadata) and --output (JSON,
docs/STUDENT.md), which depend on the inputs alone (a rerun writes the same bytes), and with
--timings a JSON of this run's wall times (loading, the training loop, the evaluation).
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import log, main_guard, paths_option
from logit_lineage.common.schema import schema_defaults
from logit_lineage.student import METHODS, SHARD_METHODS

DEFAULTS = schema_defaults("student")  # the config's defaults: one home, the schema


@click.command(help=__doc__)
@click.option("--method", type=click.Choice(METHODS), required=True)
@click.option("--seed", type=click.IntRange(min=0), required=True, help="Initial weights and batch order.")
@click.option("--examples", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Examples parquet from prepare_student_data.py.")
@paths_option("--logits", "shards", required=True,
              help="Compressed logits shard, or @LIST: the shards listed in a file (repeatable).")
@paths_option("--dense", "dense", required=False,
              help="Dense dump summary (.json.gz) with every kept token's teacher logits, or @LIST (repeatable): "
                   "the dense targets and the held-out reference, instead of a teacher forward.")
@click.option("--format-label", default="main", show_default=True,
              help="Name of the shards' format variant in the table (student.formats; main = the distillation chain's shards).")
@click.option("--teacher", required=True, help="Hub id, local directory or .gguf of the teacher.")
@click.option("--revision", default=None, help="Teacher revision.")
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULTS["steps"], show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS["batch_size"], show_default=True, help="Examples per step.")
@click.option("--learning-rate", type=float, default=DEFAULTS["learning_rate"], show_default=True, help="Peak AdamW learning rate.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=DEFAULTS["warmup_steps"], show_default=True)
@click.option("--weight-decay", type=float, default=DEFAULTS["weight_decay"], show_default=True)
@click.option("--grad-clip", type=float, default=DEFAULTS["grad_clip"], show_default=True, help="Gradient norm clip (0: off).")
@click.option("--init", "init", type=click.Choice(["scratch", "pruned"]), default=DEFAULTS["init"], show_default=True,
              help="scratch: a smaller Llama, random weights; pruned: a depth-pruned copy of the teacher.")
@click.option("--freeze-embeddings/--train-embeddings", default=DEFAULTS["freeze_embeddings"], show_default=True,
              help="Keep the input embeddings and the output head as initialised (a pruned copy keeps the teacher's).")
@click.option("--depth-fraction", type=float, default=DEFAULTS["depth_fraction"], show_default=True)
@click.option("--width-fraction", type=float, default=DEFAULTS["width_fraction"], show_default=True)
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=DEFAULTS["eval_batch_size"], show_default=True)
@click.option("--teacher-dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default=DEFAULTS["teacher_dtype"],
              show_default=True)
@click.option("--precision", type=click.Choice(["float32", "bfloat16"]), default=DEFAULTS["precision"],
              show_default=True,
              help="Training arithmetic: bfloat16 = mixed precision (body and head matmuls in bfloat16 under "
                   "autocast; weights, optimizer and loss math float32). The held-out evaluation is float32.")
@click.option("--device", default=DEFAULTS["device"], show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--curve-every", type=click.IntRange(min=0), default=DEFAULTS["curve_every"], show_default=True,
              help="Held-out KL (estimated from the shards) every N steps for the learning curve (0: off).")
@click.option("--yardstick-batches", type=click.IntRange(min=0), default=DEFAULTS["yardstick_batches"],
              show_default=True,
              help="Gradient yardstick before and after training, on the held-out examples cut into N batches "
                   "(kd.gradient_yardstick: this run's shards' target with the unbiased estimator, and for the main "
                   "shards topk, against the dense teacher; 0: off).")
@click.option("--log-every", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Student safetensors to write.")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Evaluation JSON to write.")
@click.option("--timings", type=click.Path(dir_okay=False, path_type=Path),
              help="Wall-time JSON to write (kept apart from the reproducible results).")
@main_guard
def main(method, seed, examples, shards, dense, format_label, teacher, revision, steps, batch_size, learning_rate, warmup_steps,
         weight_decay, grad_clip, init, freeze_embeddings, depth_fraction, width_fraction, eval_batch_size, teacher_dtype, precision, device, threads,
         curve_every, yardstick_batches, log_every, checkpoint, output, timings):
    import time

    import torch

    from logit_lineage.common.atomic import write_json
    from logit_lineage.common.errors import LineageError
    from logit_lineage.formats.logits import storage
    from logit_lineage.student.data import batch_order, load_student_data, order_sha256
    from logit_lineage.student.eval_file import write_eval
    from logit_lineage.student.evaluate import evaluate_heldout
    from logit_lineage.student.model import (
        build_student,
        count_parameters,
        kept_layers,
        pruned_student,
        save_student,
        state_sha256,
        student_config,
    )
    from logit_lineage.student.train import TrainSettings, train_student
    from logit_lineage.teacher.load import check_head_matches_forward, load_teacher

    if not (0 < depth_fraction <= 1 and 0 < width_fraction <= 1):
        raise LineageError(f"--depth-fraction and --width-fraction must be in (0, 1], got {depth_fraction}, "
                           f"{width_fraction}")
    started = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    data = load_student_data(examples, list(shards))
    stored = storage(shards)
    dense_logits = None
    if dense:
        from logit_lineage.kd.dense import DenseLogits

        dense_logits = DenseLogits(list(dense))
        if dense_logits.vocab_size < data.vocab_size:
            raise LineageError(f"the dense dumps hold {dense_logits.vocab_size} logits per token, the shards "
                               f"index {data.vocab_size} ids")
    model_teacher = load_teacher(teacher, revision=revision, dtype=teacher_dtype, device=device)
    dev = next(model_teacher.parameters()).device
    probe = torch.from_numpy(data.heldout[0]["input_ids"][:64]).to(dev)
    check_head_matches_forward(model_teacher, probe)
    if init == "pruned":
        student = pruned_student(model_teacher, depth_fraction)
        cfg = student.config
        log.info("pruned student keeps teacher layers %s", kept_layers(model_teacher.config.num_hidden_layers,
                                                                       depth_fraction))
    else:
        cfg = student_config(model_teacher.config, depth_fraction=depth_fraction, width_fraction=width_fraction)
    if cfg.vocab_size < data.vocab_size:
        raise LineageError(f"teacher config has {cfg.vocab_size} tokens, the shards index {data.vocab_size}")
    pad_id = cfg.pad_token_id if isinstance(cfg.pad_token_id, int) else 0
    if init == "scratch":
        student = build_student(cfg, seed)
    if dense_logits is not None:
        model_teacher = None  # the student is built; the dumps are the teacher from here on
    if freeze_embeddings:
        for module in (student.get_input_embeddings(), student.get_output_embeddings()):
            module.requires_grad_(False)
    init_sha = state_sha256(student)
    order = batch_order(len(data.train), steps=steps, batch_size=batch_size, seed=seed)
    settings = TrainSettings(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                             warmup_steps=warmup_steps, weight_decay=weight_decay, grad_clip=grad_clip,
                             log_every=log_every, precision=precision)
    log.info("student %s seed %d: %d layers, hidden %d, %d heads, %d parameters; %d training / %d held-out "
             "examples on %s", method, seed, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
             count_parameters(student), len(data.train), len(data.heldout), dev)
    yardstick = {}
    reference = dense_logits if dense_logits is not None else model_teacher  # the dense teacher
    yardstick_batches = yardstick_batches if method == "compressed" else 0  # the run's own sparse target
    estimators = ("unbiased", "topk") if format_label == "main" else ("unbiased",)
    if yardstick_batches:
        import numpy as np

        from logit_lineage.kd import KDDataCollator, gradient_yardstick

        if yardstick_batches > len(data.heldout) or yardstick_batches < 2:
            raise LineageError(f"--yardstick-batches {yardstick_batches}: the held-out set has "
                               f"{len(data.heldout)} examples, at least 2 batches of one are needed")
        collate = KDDataCollator(data.vocab_size, pad_id=pad_id, labels=False)
        parts = np.array_split(np.arange(len(data.heldout)), yardstick_batches)
        yard_batches = [{k: (v.to(dev) if hasattr(v, "to") else v) for k, v in
                         collate([data.heldout[i] for i in part]).items()} for part in parts]
        student.to(dev)
        yardstick["init"] = gradient_yardstick(student, reference, yard_batches, estimators=estimators)
    loaded = time.perf_counter()
    result = train_student(student, data.train, order, method, settings, device=dev,
                           teacher=reference if method == "dense" or dense_logits is not None else None,
                           pad_id=pad_id,
                           vocab_size=data.vocab_size, heldout=data.heldout, curve_every=curve_every,
                           eval_batch_size=eval_batch_size)
    if yardstick_batches:
        yardstick["final"] = gradient_yardstick(student, reference, yard_batches, estimators=estimators)
    eval_start = time.perf_counter()
    held = evaluate_heldout(student, reference, data.heldout, batch_size=eval_batch_size, pad_id=pad_id,
                            vocab_size=data.vocab_size, device=dev,
                            nucleus=(stored["top_p"], stored["top_p_max_elements"]))
    eval_seconds = time.perf_counter() - eval_start
    save_student(student, checkpoint, method=method, seed=seed, steps=steps)
    write_eval(output, {
        "method": method,
        "seed": seed,
        "checkpoint": str(checkpoint),
        "shards": {"label": format_label, **stored},
        "student": {
            "init": init, "frozen_embeddings": freeze_embeddings,
            "trained_parameters": sum(p.numel() for p in student.parameters() if p.requires_grad),
            "num_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
            "num_heads": cfg.num_attention_heads, "intermediate_size": getattr(cfg, "intermediate_size", None),
            "vocab_size": cfg.vocab_size, "parameters": count_parameters(student),
        },
        "training": {
            "steps": result.steps, "batch_size": batch_size, "learning_rate": learning_rate,
            "warmup_steps": warmup_steps, "weight_decay": weight_decay, "grad_clip": grad_clip,
            "train_examples": len(data.train), "tokens": result.tokens, "examples": result.examples,
            "teacher_forward_tokens": result.teacher_tokens, "final_loss": result.final_loss,
            "loss_curve": [[s, v] for s, v in result.losses],
            "heldout_curve": [[s, v] for s, v in result.curve],
            "data_order_sha256": order_sha256(order, data.train), "init_sha256": init_sha, "device": str(dev),
            **({"precision": precision} if precision != "float32" else {}),  # absent: float32
        },
        "heldout": held,
        **({"gradient_yardstick": yardstick} if yardstick else {}),
    })
    shards_used = (f" on {format_label} (format {stored['format_version']}, {stored['bytes_per_token']:.1f} B/token)"
                   if method in SHARD_METHODS else "")
    line = (f"{method}{shards_used} seed {seed}: {result.steps} steps, "
            f"{result.tokens} tokens in {result.seconds:.1f} s; "
            f"held-out KL to teacher {held['kl_to_teacher']:.4f}, CE {held['ce']:.4f}, "
            f"top-1 agreement {held['top1_agree']:.3f} ({held['tokens']} tokens)")
    log.info(line)
    click.echo(line)
    if timings:
        write_json(timings, {"method": method, "format": format_label, "seed": seed, "device": str(dev),
                             "threads": torch.get_num_threads(),
                             "load_seconds": round(loaded - started, 3), "train_seconds": round(result.seconds, 3),
                             "eval_seconds": round(eval_seconds, 3), "steps": result.steps})


if __name__ == "__main__":
    main()
