"""Resolve the teacher/dataset a rule works on and tokenize rows the same way everywhere."""
from __future__ import annotations

import numpy as np

from common.errors import LineageError
from distill.chat import MaskOptions, check_messages, tokenize_conversation


def mask_options(exclude_think: bool, exclude_eot: bool, eot_tokens: tuple[str, ...]) -> MaskOptions:
    return MaskOptions(exclude_think=exclude_think, exclude_eot=exclude_eot, eot_tokens=tuple(eot_tokens))


def tokenize_row(tokenizer, ds, column: str, index: int, opts: MaskOptions, dataset_name: str):
    """(ids, kept positions) of dataset row `index`; bad rows raise one-line errors."""
    where = f"{dataset_name} row {index}"
    messages = check_messages(ds[int(index)][column], where)
    try:
        ids, mask = tokenize_conversation(tokenizer, messages, opts, where)
    except LineageError:
        raise
    except Exception as exc:  # template errors from jinja / tokenizers
        raise LineageError(f"{where}: chat template failed: {str(exc).splitlines()[0]}") from None
    return ids, np.nonzero(mask)[0].astype(np.int64)
