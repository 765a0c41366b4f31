"""Conversations → token ids and the mask of positions whose logits are kept."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from logit_lineage.common.errors import LineageError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass
class MaskOptions:
    exclude_think: bool = False
    exclude_eot: bool = False
    eot_tokens: tuple[str, ...] = ()


def check_messages(messages, where: str) -> list[dict]:
    """A row's messages: a non-empty list of {role, content} with an assistant turn."""
    if messages is None or len(messages) == 0:
        raise LineageError(f"{where}: no messages (expected a non-empty list of {{role, content}})")
    out = []
    for j, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise LineageError(f"{where}: message {j} (0-based) is not a {{role, content}} mapping")
        if msg["content"] is None and msg["role"] == "assistant":
            # Parquet and JSON Lines readers fill a missing key with null: an assistant turn
            # without text would train the student on an empty answer.
            raise LineageError(f"{where}: message {j} (0-based) is an assistant turn with no content")
        out.append({"role": msg["role"], "content": msg["content"] if msg["content"] is not None else ""})
    if not any(m["role"] == "assistant" for m in out):
        raise LineageError(f"{where}: no assistant turn (roles: {[m['role'] for m in out]})")
    return out


def _single_token(tokenizer, text: str) -> int | None:
    ids = tokenizer.convert_tokens_to_ids(text)
    if isinstance(ids, int) and ids != tokenizer.unk_token_id and ids is not None:
        return ids
    return None


def tokenize_conversation(tokenizer, messages: list[dict], opts: MaskOptions, where: str):
    """Token ids [T] and kept mask [T] (bool): assistant tokens that have a predecessor."""
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    mask = np.asarray(enc["assistant_masks"], dtype=bool)
    if mask.shape != ids.shape:
        raise LineageError(f"{where}: assistant mask length {mask.shape} != token count {ids.shape}")
    if opts.exclude_think:
        open_id, close_id = _single_token(tokenizer, THINK_OPEN), _single_token(tokenizer, THINK_CLOSE)
        if open_id is None or close_id is None:
            raise LineageError(f"exclude_think needs {THINK_OPEN} and {THINK_CLOSE} to be single tokens of the tokenizer")
        inside = np.cumsum((ids == open_id).astype(np.int64) - np.concatenate([[0], (ids == close_id)[:-1]]).astype(np.int64)) > 0
        mask &= ~inside
    if opts.exclude_eot:
        eot = {tokenizer.eos_token_id} | {_single_token(tokenizer, t) for t in opts.eot_tokens}
        eot.discard(None)
        mask &= ~np.isin(ids, list(eot))
    mask[0] = False  # position 0 has no prefix to predict it from
    return ids, mask
