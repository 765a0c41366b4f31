#!/usr/bin/env python
"""List the student chain's examples: the shards' conversations, tokenized once, split into
training and held-out sets.

Reads every --logits shard through `logit_lineage.kd` (the teacher tokenizer is checked
against the shards' fingerprints when they carry them), tokenizes each stored example's
conversation with the teacher's chat template, checks that the stored tokens sit at the
stored positions, and holds out the examples whose dataset row index is a multiple of
--heldout-every (at most --heldout-max-examples, lowest indices first). Writes the list with
token ids (docs/STUDENT.md, `student.examples_file`): every training run reads it, so all
methods and seeds share the split.
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import log, main_guard, paths_option
from logit_lineage.common.schema import schema_defaults

DEFAULTS = schema_defaults("student")  # the config's defaults: one home, the schema


@click.command(help=__doc__)
@click.option("--teacher", required=True, help="Hub id, local directory or .gguf of the teacher (its tokenizer).")
@click.option("--revision", default=None, help="Teacher revision (Hub branch, tag or commit).")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The Jinja chat template the extraction used instead of the tokenizer's.")
@click.option("--dataset", required=True, help="The conversations the shards were extracted from.")
@click.option("--split", default="train", show_default=True)
@click.option("--dataset-config", default=None)
@click.option("--messages-column", default="messages", show_default=True)
@paths_option("--logits", "shards", required=True,
              help="Compressed logits shard, or @LIST: the shards listed in a file (repeatable).")
@click.option("--heldout-every", type=click.IntRange(min=2), default=DEFAULTS["heldout_every"], show_default=True,
              help="Hold out the examples whose row index is a multiple of this.")
@click.option("--heldout-max-examples", type=click.IntRange(min=1), default=DEFAULTS["heldout_max_examples"], show_default=True)
@click.option("--max-train-examples", type=click.IntRange(min=1), default=None,
              help="Train on at most this many examples (lowest row indices first).")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Examples parquet to write.")
@main_guard
def main(teacher, revision, chat_template, dataset, split, dataset_config, messages_column, shards, heldout_every,
         heldout_max_examples, max_train_examples, output):
    from logit_lineage.student.data import prepare_examples
    from logit_lineage.student.examples_file import write_examples
    from logit_lineage.teacher.data import load_conversations
    from logit_lineage.teacher.load import load_tokenizer

    tokenizer = load_tokenizer(teacher, revision, chat_template)
    conversations = load_conversations(dataset, split=split, config=dataset_config, column=messages_column)
    train, heldout, params = prepare_examples(
        list(shards), tokenizer, conversations, column=messages_column, every=heldout_every,
        max_heldout=heldout_max_examples, max_train=max_train_examples)
    info = {
        "heldout_every": heldout_every, "heldout_max_examples": heldout_max_examples,
        "max_train_examples": max_train_examples, "vocab_size": int(params["vocab_size"]),
        "shards": [p.name for p in shards], "teacher": params.get("teacher"),
    }
    write_examples(output, train, heldout, info)
    n_train = sum(len(it["positions"]) for it in train)
    n_held = sum(len(it["positions"]) for it in heldout)
    log.info("%d training examples (%d stored tokens), %d held out (%d tokens) from %d shard(s)",
             len(train), n_train, len(heldout), n_held, len(shards))
    click.echo(f"{output}: {len(train)} train / {len(heldout)} held-out examples")


if __name__ == "__main__":
    main()
