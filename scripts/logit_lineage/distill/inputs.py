"""Resolve the teacher/dataset a rule works on and tokenize rows the same way everywhere."""
from __future__ import annotations

import click
import numpy as np

from logit_lineage.common.errors import LineageError, row_where
from logit_lineage.common.schema import schema_defaults
from logit_lineage.teacher.chat import MaskOptions, check_messages, tokenize_conversation


def source_options(func):
    """The teacher, dataset and mask options every script of the distillation chain shares (named as the config keys)."""
    defaults = schema_defaults("distill")  # the config's defaults: one home, the schema
    options = [
        click.option("--teacher", required=True, help="Hub id or local directory of the teacher."),
        click.option("--revision", default=None, help="Teacher revision (Hub branch, tag or commit)."),
        click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Jinja chat template with {% generation %} markers, instead of the tokenizer's."),
        click.option("--dataset", required=True, help="Hub dataset id or local .parquet/.jsonl/.json."),
        click.option("--split", default=defaults["dataset_split"], show_default=True),
        click.option("--dataset-config", default=None),
        click.option("--messages-column", default=defaults["messages_column"], show_default=True),
        click.option("--limit", type=int, default=None, help="Use only the first N rows (the same in every step)."),
        click.option("--exclude-think/--keep-think", default=defaults["exclude_think"], show_default=True,
                     help="Leave <think>…</think> spans out of the kept positions."),
        click.option("--exclude-eot/--keep-eot", default=defaults["exclude_eot"], show_default=True,
                     help="Leave end-of-turn tokens out of the kept positions."),
        click.option("--eot-token", "eot_tokens", multiple=True, help="Extra end-of-turn token (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def mask_options(exclude_think: bool, exclude_eot: bool, eot_tokens: tuple[str, ...]) -> MaskOptions:
    return MaskOptions(exclude_think=exclude_think, exclude_eot=exclude_eot, eot_tokens=tuple(eot_tokens))


def tokenize_row(tokenizer, ds, column: str, index: int, opts: MaskOptions, dataset_name: str):
    """(ids, kept positions) of dataset row `index`; bad rows raise one-line errors."""
    where = row_where(dataset_name, index)
    messages = check_messages(ds[int(index)][column], where)
    try:
        ids, mask = tokenize_conversation(tokenizer, messages, opts, where)
    except LineageError:
        raise
    except Exception as exc:  # template errors from jinja / tokenizers
        raise LineageError(f"{where}: chat template failed: {str(exc).splitlines()[0]}") from None
    return ids, np.nonzero(mask)[0].astype(np.int64)


def shard_rows(shard_path, shard, tokenizer, ds, column: str, opts: MaskOptions, dataset_name: str):
    """Tokenize a shard's examples (a `read_shard_rows` frame) into extraction rows.

    The token counts must equal the lengths table's: a mismatch means the
    tokenizer, chat template or mask options changed since compute_lengths.
    """
    from logit_lineage.teacher.data import Row

    rows = []
    for index, n_total, n_kept in zip(shard["index"], shard["num_tokens"], shard["num_assistant_tokens"]):
        if index >= len(ds):
            raise LineageError(f"row index {index} is beyond the dataset ({len(ds)} rows)", path=shard_path)
        ids, kept = tokenize_row(tokenizer, ds, column, index, opts, dataset_name)
        if len(ids) != n_total or len(kept) != n_kept:
            raise LineageError(
                f"{row_where('dataset', index)}: {len(ids)} tokens / {len(kept)} kept now, lengths table says {n_total} / {n_kept}"
                " (tokenizer, template or options changed since compute_lengths)", path=shard_path)
        rows.append(Row(int(index), ids, kept))
    return rows


def load_shard_rows(shard_path, *, teacher, revision, chat_template, dataset, split, dataset_config,
                    messages_column, limit, exclude_think, exclude_eot, eot_tokens):
    """(tokenizer, rows) of one shard, from `source_options` values, checked against the lengths table."""
    from logit_lineage.distill.lengths import read_shard_rows
    from logit_lineage.teacher.data import load_conversations
    from logit_lineage.teacher.load import load_tokenizer

    shard = read_shard_rows(shard_path).to_pandas()
    tokenizer = load_tokenizer(teacher, revision, chat_template)
    ds = load_conversations(dataset, split=split, config=dataset_config, column=messages_column, limit=limit)
    opts = mask_options(exclude_think, exclude_eot, eot_tokens)
    return tokenizer, shard_rows(shard_path, shard, tokenizer, ds, messages_column, opts, dataset)
