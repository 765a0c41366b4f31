#!/usr/bin/env python
"""Tokenize every conversation with the teacher's chat template and record its length.

Per example: index, total tokens, and assistant tokens whose logits will be kept
(from apply_chat_template(..., return_assistant_tokens_mask=True), after the
optional <think> / end-of-turn exclusions). Examples with no kept assistant
tokens or longer than --max-seq-len are listed with a reason (lengths table
column `skip_reason` and the skipped TSV), never dropped silently. A row with no
messages or no assistant turn is an error naming the row.
"""
from __future__ import annotations

import click
from tqdm import tqdm

from logit_lineage.common.atomic import write_text
from logit_lineage.common.cli import log, main_guard
from logit_lineage.distill.inputs import mask_options, source_options, tokenize_row
from logit_lineage.distill.lengths import write_lengths
from logit_lineage.teacher.data import load_conversations
from logit_lineage.teacher.load import load_tokenizer


@click.command(help=__doc__)
@source_options
@click.option("--max-seq-len", type=click.IntRange(min=2), required=True)
@click.option("--output", type=click.Path(dir_okay=False), required=True, help="lengths parquet")
@click.option("--skipped", type=click.Path(dir_okay=False), required=True, help="TSV of skipped rows")
@main_guard
def main(teacher, revision, chat_template, dataset, split, dataset_config, messages_column, limit,
         max_seq_len, exclude_think, exclude_eot, eot_tokens, output, skipped):
    tokenizer = load_tokenizer(teacher, revision, chat_template)
    ds = load_conversations(dataset, split=split, config=dataset_config, column=messages_column, limit=limit)
    opts = mask_options(exclude_think, exclude_eot, eot_tokens)
    cols = {"index": [], "num_tokens": [], "num_assistant_tokens": [], "skip_reason": []}
    for i in tqdm(range(len(ds)), desc="lengths", mininterval=2.0):
        ids, kept = tokenize_row(tokenizer, ds, messages_column, i, opts, dataset)
        reason = None
        if len(ids) > max_seq_len:
            reason = "too_long"
        elif len(kept) == 0:
            reason = "no_assistant_tokens"
        cols["index"].append(i)
        cols["num_tokens"].append(len(ids))
        cols["num_assistant_tokens"].append(len(kept))
        cols["skip_reason"].append(reason)
    write_lengths(output, cols, meta={"dataset": dataset, "teacher": teacher, "max_seq_len": max_seq_len})
    lines = ["index\tnum_tokens\treason"] + [
        f"{i}\t{n}\t{r}" for i, n, r in zip(cols["index"], cols["num_tokens"], cols["skip_reason"]) if r
    ]
    write_text(skipped, "\n".join(lines) + "\n")
    n_skip = len(lines) - 1
    log.info("%d examples, %d kept, %d skipped (see %s), %d tokens in kept examples", len(ds),
             len(ds) - n_skip, n_skip, skipped,
             sum(n for n, r in zip(cols["num_tokens"], cols["skip_reason"]) if r is None))


if __name__ == "__main__":
    main()
