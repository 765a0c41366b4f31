"""Deterministic synthetic chats (single- and multi-turn), no download.

The tasks are regular enough that a tiny model learns them, so its next-token
distributions come out peaked like a real teacher's, with some uncertainty
left in the free-form parts.
"""
from __future__ import annotations

import random

WORDS = ("apple river stone cloud tiger maple candle silver window garden rocket piano "
         "forest lemon harbor violet castle meadow pepper comet").split()
COUNTRIES = {"Aldoria": "Vennick", "Brumar": "Ostgate", "Cyrel": "Lumen", "Dovania": "Karsk",
             "Eskar": "Tolvey", "Fenwick": "Marrow", "Galdor": "Quill", "Hesper": "Ravel"}
SYSTEMS = ("You are a helpful assistant.", "Answer briefly.", "You are a careful tutor.")


def _arith(rng):
    a, b = rng.randint(1, 50), rng.randint(1, 50)
    op, f = rng.choice([("plus", a + b), ("minus", a - b), ("times", a * b)])
    return f"What is {a} {op} {b}?", f"{a} {op} {b} is {f}.", (a, op, b, f)


def _count(rng):
    a = rng.randint(1, 20)
    b = a + rng.randint(2, 8)
    return f"Count from {a} to {b}.", ", ".join(str(i) for i in range(a, b + 1)) + ".", None


def _reverse(rng):
    ws = rng.sample(WORDS, rng.randint(2, 5))
    return f"Reverse these words: {' '.join(ws)}", " ".join(reversed(ws)), None


def _spell(rng):
    w = rng.choice(WORDS)
    return f"Spell {w}.", "-".join(w), None


def _capital(rng):
    c = rng.choice(sorted(COUNTRIES))
    return f"What is the capital of {c}?", f"The capital of {c} is {COUNTRIES[c]}.", None


def _story(rng):
    w1, w2 = rng.sample(WORDS, 2)
    return (f"Tell me something about a {w1} and a {w2}.",
            f"Once there was a {w1} near a {w2}. The {w1} liked the {w2} very much.", None)


TASKS = (_arith, _count, _reverse, _spell, _capital, _story)


def _think(rng, answer: str) -> str:
    return f"<think>The user asks a simple question. I answer: {answer}</think>{answer}"


def make_conversation(rng: random.Random, think_fraction: float) -> list[dict]:
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for turn in range(rng.choice((1, 1, 1, 2, 2, 3))):
        question, answer, state = rng.choice(TASKS)(rng)
        if turn > 0 and state is not None and rng.random() < 0.5:
            a, op, b, f = state
            question, answer = f"And {f} plus {b}?", f"{f} plus {b} is {f + b}."
        if rng.random() < think_fraction:
            answer = _think(rng, answer)
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    return messages


def make_dataset(n: int, seed: int, think_fraction: float) -> list[list[dict]]:
    rng = random.Random(seed)
    return [make_conversation(rng, think_fraction) for _ in range(n)]
