#!/usr/bin/env python
"""Dump the teacher's dense logits for a seeded sample of one shard's kept tokens, or
with --all-tokens for every one of them (the student chain's dense targets, computed once).

Draws --tokens assistant tokens uniformly (without replacement) from the
tokens the extractor keeps in the shard (same tokenizer, chat template and
mask options as extract_logits.py), runs the teacher on the examples that hold
them, and stores each token's full logits [vocab] as it was computed for that
token: at position t − 1, as in the compressed records. The output is a dense
dump (docs/FIDELITY.md): OUTPUT (.json.gz summary) plus OUTPUT's
.safetensors and .metadata.json beside it. Metadata per entry: sample_idx (the
shard row), example_idx (dataset index), position, token_index (rank among the
example's kept tokens, i.e. the row in its compressed record), token_id.
"""
from __future__ import annotations

import time

import click
import torch

from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.distill.inputs import load_shard_rows, source_options
from logit_lineage.fidelity.dense import dense_logits, sample_tokens
from logit_lineage.formats.dense_dump import DTYPES, DenseEntry, dump_paths, write_dense_dump
from logit_lineage.teacher.load import check_head_matches_forward, load_teacher

DISTILL = schema_defaults("distill")  # the config's defaults: one home, the schemas
FIDELITY = schema_defaults("fidelity")


@click.command(help=__doc__)
@source_options
@click.option("--shard", "shard_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Shard rows parquet from make_shards.py.")
@click.option("--output", type=click.Path(dir_okay=False), required=True,
              help="Summary path, ending in .json.gz; the .safetensors and .metadata.json go beside it.")
@click.option("--tokens", "n_tokens", type=click.IntRange(min=1), default=FIDELITY["tokens_per_shard"],
              show_default=True, help="Kept tokens to sample from the shard (all of them if it has fewer).")
@click.option("--all-tokens", is_flag=True,
              help="Dump every kept token of the shard (dense distillation targets), not a sample; --tokens "
                   "and --seed are then unused.")
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True)
@click.option("--stream", type=click.IntRange(min=0), default=0, show_default=True,
              help="Second seed component (the workflow passes the shard number).")
@click.option("--store-dtype", type=click.Choice(sorted(DTYPES)), default=FIDELITY["dense_dtype"],
              show_default=True, help="dtype of the stored logits.")
@click.option("--token-budget", type=click.IntRange(min=1), default=DISTILL["token_budget"], show_default=True)
@click.option("--max-batch-size", type=click.IntRange(min=1), default=DISTILL["max_batch_size"], show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default=DISTILL["dtype"],
              show_default=True, help="Teacher weights dtype (use the extraction's).")
@click.option("--device", default=DISTILL["device"], show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@main_guard
def main(teacher, revision, chat_template, dataset, split, dataset_config, messages_column, limit, exclude_think,
         exclude_eot, eot_tokens, shard_path, output, n_tokens, all_tokens, seed, stream, store_dtype, token_budget,
         max_batch_size, dtype, device, threads):
    dump_paths(output)  # refuse a bad output name before any work
    if threads:
        torch.set_num_threads(threads)
    started = time.monotonic()
    tokenizer, rows = load_shard_rows(
        shard_path, teacher=teacher, revision=revision, chat_template=chat_template, dataset=dataset, split=split,
        dataset_config=dataset_config, messages_column=messages_column, limit=limit, exclude_think=exclude_think,
        exclude_eot=exclude_eot, eot_tokens=eot_tokens)
    if all_tokens:
        n_tokens = sum(len(r.kept) for r in rows)
    picks = sample_tokens(rows, n_tokens, seed, stream)
    log.info("%s: sampled %d of %d kept tokens from %d examples", shard_path, len(picks),
             sum(len(r.kept) for r in rows), len({p.row for p in picks}))

    model = load_teacher(teacher, revision=revision, dtype=dtype, device=device)
    if rows:
        probe = torch.from_numpy(rows[-1].ids[:64]).to(next(model.parameters()).device)
        check_head_matches_forward(model, probe)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logits = dense_logits(model, rows, picks, token_budget=token_budget, max_batch_size=max_batch_size,
                          pad_id=pad_id)
    entries = [
        DenseEntry(sample_idx=p.row, example_idx=rows[p.row].index, position=p.position, logits=z,
                   fields={"token_index": p.token_index, "token_id": int(rows[p.row].ids[p.position])})
        for p, z in zip(picks, logits)
    ]
    info = {
        "source": "teacher dense logits for " + ("every kept token" if all_tokens else "sampled kept tokens"),
        "alignment": "entry for token t is computed at position t-1",
        "teacher": teacher, "teacher_revision": revision, "dataset": dataset, "shard": str(shard_path),
        "tokens_requested": n_tokens, "seed": seed, "stream": stream,
        "teacher_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "exclude_think": exclude_think, "exclude_eot": exclude_eot,
    }
    write_dense_dump(output, entries, dtype=store_dtype, info=info)
    log.info("%s: %d entries in %.1f s", output, len(entries), time.monotonic() - started)


if __name__ == "__main__":
    main()
