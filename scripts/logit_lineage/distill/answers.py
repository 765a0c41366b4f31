"""Conversations whose assistant turns are the teacher's own sampled answers.

A fixed list of prompts (one user turn each) is rendered with the teacher's
chat template (`add_generation_prompt=True`), left-padded into batches and
continued by `model.generate` with seeded sampling. The answer is the text up
to the first end-of-sequence token; an answer cut by `max_new_tokens` is kept
as it is (the chat template closes the turn). The conversations are
[user, assistant] pairs in the demo dataset's layout, so the distillation chain reads them
like any chat dataset, and on them the teacher's next-token distributions are
the ones it has on its own text.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema

log = logging.getLogger("logit_lineage")


@dataclass
@defaults_from_schema("distill", "generate")  # the defaults' one home: workflow/schemas/distill.schema.yaml
class GenerationSettings:
    seed: int
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int


def read_prompts(path: str | Path, limit: int | None = None) -> list[str]:
    """Prompts of a text file: one per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LineageError(f"cannot read prompts ({exc})", path=path) from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise LineageError("no prompts (expected one prompt per line; # starts a comment)", path=path)
    return prompts[:limit] if limit is not None else prompts


def batch_seed(seed: int, batch: int) -> int:
    """The sampling seed of one batch: a function of (seed, batch number) only."""
    digest = hashlib.sha256(f"generate_answers:{seed}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[j, width - len(r):] = 1
    return ids, mask


@torch.inference_mode()
def generate_answers(model, tokenizer, prompts: list[str], settings: GenerationSettings) -> tuple[list, dict]:
    """([[user, assistant], …] per prompt, stats). Same prompts + settings + software → same answers."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise LineageError("the teacher's tokenizer has no eos token: cannot tell where an answer ends")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    dev = next(model.parameters()).device
    rendered = []
    for i, prompt in enumerate(prompts):
        try:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                                add_generation_prompt=True, return_dict=True)["input_ids"]
        except Exception as exc:  # jinja / tokenizers errors
            raise LineageError(f"prompt {i}: chat template failed: {str(exc).splitlines()[0]}") from None
        rendered.append(list(ids))

    conversations, new_tokens, truncated = [], 0, 0
    starts = range(0, len(prompts), settings.batch_size)
    for b, start in enumerate(tqdm(starts, desc="generate", unit="batch", mininterval=2.0)):
        rows = rendered[start:start + settings.batch_size]
        ids, mask = _left_padded(rows, pad)
        torch.manual_seed(batch_seed(settings.seed, b))
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), do_sample=True,
                             temperature=settings.temperature, top_p=settings.top_p, top_k=0,
                             max_new_tokens=settings.max_new_tokens, eos_token_id=eos, pad_token_id=pad)
        for j, prompt in enumerate(prompts[start:start + settings.batch_size]):
            gen = out[j, ids.shape[1]:].tolist()
            ended = eos in gen
            gen = gen[: gen.index(eos)] if ended else gen
            truncated += not ended
            new_tokens += len(gen)
            answer = tokenizer.decode(gen, skip_special_tokens=True).strip()
            conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    stats = {"conversations": len(conversations), "new_tokens": new_tokens, "truncated": truncated}
    return conversations, stats
