"""The assistant mask: every assistant turn, <think> spans and end-of-turn tokens left out on request."""
from __future__ import annotations

import pytest

from logit_lineage.teacher.chat import MaskOptions, tokenize_conversation
from logit_lineage.teacher.load import load_tokenizer

CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2 plus 2?"},
    {"role": "assistant", "content": "<think>Easy: four.</think>2 plus 2 is 4."},
    {"role": "user", "content": "And 4 plus 2?"},
    {"role": "assistant", "content": "4 plus 2 is 6."},
]


@pytest.fixture(scope="module")
def tokenizer(demo_inputs):
    return load_tokenizer(str(demo_inputs["teacher"]))


def kept_text(tok, opts):
    ids, mask = tokenize_conversation(tok, CHAT, opts, "test")
    return "".join(tok.decode([int(i)]) for i in ids[mask])


def test_every_assistant_turn_is_kept(tokenizer):
    text = kept_text(tokenizer, MaskOptions())
    assert text == "<think>Easy: four.</think>2 plus 2 is 4.<|end|>4 plus 2 is 6.<|end|>"


def test_think_spans_can_be_left_out(tokenizer):
    assert kept_text(tokenizer, MaskOptions(exclude_think=True)) == "2 plus 2 is 4.<|end|>4 plus 2 is 6.<|end|>"


def test_end_of_turn_tokens_can_be_left_out(tokenizer):
    text = kept_text(tokenizer, MaskOptions(exclude_think=True, exclude_eot=True))
    assert text == "2 plus 2 is 4.4 plus 2 is 6."
