#!/usr/bin/env python
"""Extract compressed teacher logits for one length-sorted shard.

For every kept assistant token t the row stores the teacher's distribution for
that token (computed at position t−1): the nucleus reaching --top-p (capped at
--top-p-max-elements), --sampled-n Gumbel-top-k tail samples with their
threshold, the logsumexp and packed ids; values as uint16 logits quantized per
token (--format-version 2, the default) or as 8-bit log-probability codes with
subtractive dither (--format-version 3, about half the bytes)
(docs/FORMAT.md). Batches follow a token budget over the sorted rows; the lm
head runs only on kept positions. SIGTERM or --max-runtime-minutes stops after
the current batch and keeps progress in <output>.partial/; rerunning the same
command finishes the shard with byte-identical output.
"""
from __future__ import annotations

import sys
import time

import click
import torch

from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.distill.extract import ExtractionSettings, StopFlag, StopRequested, extract_shard, partial_lock
from logit_lineage.distill.inputs import load_shard_rows, source_options
from logit_lineage.formats.fingerprints import shard_fingerprints
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.params import CompressionParams
from logit_lineage.kd.tokenizer import tokenizer_record
from logit_lineage.teacher.load import check_head_matches_forward, load_teacher

EXIT_STOPPED = 75  # EX_TEMPFAIL: progress kept, rerun to finish
DEFAULTS = schema_defaults("distill")  # the config's defaults: one home, the schema
QUANTIZATION = {
    "2": "uint16 per-row min/max",
    "3": "uint8 log-probability codes (nucleus step 1/16, tail step 1/8 nat), subtractive dither",
}


@click.command(help=__doc__)
@source_options
@click.option("--shard", "shard_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Shard rows parquet from make_shards.py.")
@click.option("--output", type=click.Path(dir_okay=False), required=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=DEFAULTS["top_p"], show_default=True)
@click.option("--top-p-max-elements", type=click.IntRange(1, 255), default=DEFAULTS["top_p_max_elements"],
              show_default=True)
@click.option("--sampled-n", type=click.IntRange(0, 255), default=DEFAULTS["sampled_n"], show_default=True)
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True)
@click.option("--format-version", type=click.Choice(["2", "3"]), default=str(DEFAULTS["format_version"]),
              show_default=True, help="Compressed-logits format to write (docs/FORMAT.md).")
@click.option("--token-budget", type=click.IntRange(min=1), default=DEFAULTS["token_budget"], show_default=True)
@click.option("--max-batch-size", type=click.IntRange(min=1), default=DEFAULTS["max_batch_size"], show_default=True)
@click.option("--head-chunk-rows", type=click.IntRange(min=1), default=None,
              help="Positions per lm-head chunk (default: ~4M logits per chunk on CPU, ~64M on GPU).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default=DEFAULTS["dtype"],
              show_default=True)
@click.option("--device", default=DEFAULTS["device"], show_default=True)
@click.option("--gpus", type=click.IntRange(min=1), default=DEFAULTS["gpus_per_job"], show_default=True,
              help="Split the teacher over this many CUDA devices (layers balanced, lm head on the first).")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--verify-mask", "verify_rows", type=int, default=DEFAULTS["verify_mask_rows"], show_default=True,
              help="Print what the assistant mask selects for this many rows.")
@click.option("--max-runtime-minutes", type=float, default=None,
              help="Stop after this long, keeping progress for the rerun (exit 75).")
@click.option("--teacher-label", default=None, help="Teacher name recorded in metadata (default --teacher).")
@click.option("--dataset-label", default=None, help="Dataset name recorded in metadata (default --dataset).")
@main_guard
def main(teacher, revision, chat_template, dataset, split, dataset_config, messages_column, limit, shard_path,
         output, top_p, top_p_max_elements, sampled_n, seed, format_version, token_budget, max_batch_size, head_chunk_rows,
         exclude_think, exclude_eot, eot_tokens, dtype, device, gpus, threads, verify_rows, max_runtime_minutes,
         teacher_label, dataset_label):
    # One writer per shard: a second one (a requeued job while the first still runs)
    # stops here with one line, before loading anything.
    lock = partial_lock(output).acquire()
    if threads:
        torch.set_num_threads(threads)
    stop = StopFlag(None if max_runtime_minutes is None else max_runtime_minutes * 60)
    stop.install()
    started = time.monotonic()
    tokenizer, rows = load_shard_rows(
        shard_path, teacher=teacher, revision=revision, chat_template=chat_template, dataset=dataset, split=split,
        dataset_config=dataset_config, messages_column=messages_column, limit=limit, exclude_think=exclude_think,
        exclude_eot=exclude_eot, eot_tokens=eot_tokens)
    for row in rows[:verify_rows]:
        text = "".join(f"[{tokenizer.decode(int(row.ids[t]))}]" for t in row.kept)
        log.info("mask check, row %d: %d of %d tokens kept: %s", row.index, len(row.kept), len(row.ids), text)

    model = load_teacher(teacher, revision=revision, dtype=dtype, device=device, gpus=gpus)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    if rows:
        probe = torch.from_numpy(rows[-1].ids[:64]).to(next(model.parameters()).device)
        diff = check_head_matches_forward(model, probe)
        log.info("lm head on kept positions matches the model's forward (max |Δlogit| %.2e)", diff)


    compression = CompressionParams(format_version=int(format_version), top_p=top_p,
                                    top_p_max_elements=top_p_max_elements, sampled_n=sampled_n)
    params = {
        "teacher": teacher_label or teacher, "teacher_revision": revision,
        "dataset": dataset_label or dataset, "dataset_split": split, "dataset_config": dataset_config,
        "vocab_size": vocab, "index_high_bits": high_bits_for_vocab(vocab),
        **compression.metadata_params(), "seed": seed,
        "exclude_think": exclude_think, "exclude_eot": exclude_eot,
        "quantization": QUANTIZATION[format_version], "alignment": "row for token t is computed at position t-1",
        "sampler": "gumbel-top-k as exponential race (float64) with threshold; draws seeded per (seed, index, 64-token block, round)",
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        # Checked by logit_lineage.kd before a student trains on the shard (docs/KD.md).
        "fingerprints": shard_fingerprints(tokenizer, dataset, split=split, config=dataset_config, limit=limit),
        # What rebuilds that tokenizer and template (logit_lineage.kd.teacher_tokenizer).
        "teacher_tokenizer": tokenizer_record(teacher, revision, tokenizer),
    }
    # Chunks bound the [rows, vocab] buffers (a 64-token noise block is never split):
    # ~4M logits on CPU, where larger chunks gain nothing; ~64M on a GPU, where
    # fewer, larger kernels are what makes the compression cheap next to the forward.
    on_gpu = next(model.parameters()).device.type == "cuda"
    chunk_rows = head_chunk_rows or max(1, (1 << (26 if on_gpu else 22)) // vocab)
    settings = ExtractionSettings(compression=compression, seed=seed, token_budget=token_budget,
                                  max_batch_size=max_batch_size, head_chunk_rows=chunk_rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        stats = extract_shard(model, rows, settings, params, output, pad_id, stop, lock)
    except StopRequested as exc:
        click.echo(f"stopped: {exc}", err=True)
        sys.exit(EXIT_STOPPED)
    elapsed = time.monotonic() - started
    log.info("%s: %d examples, %d tokens in %d batches, %.1f s (%.0f tok/s)", output, stats["examples"],
             stats["tokens"], stats["batches"], elapsed, stats["tokens"] / max(elapsed, 1e-9))


if __name__ == "__main__":
    main()
