"""Build the demo teacher: a BPE tokenizer, a chat template, a tiny Llama."""
from __future__ import annotations

import logging
import math

import torch
from tqdm import tqdm

log = logging.getLogger("logit_lineage")

SPECIAL = ["<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<think>", "</think>"]
# Assistant text sits between {% generation %} markers so
# apply_chat_template(..., return_assistant_tokens_mask=True) can find it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def render(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        parts.append(f"<|{m['role']}|>\n{m['content']}<|end|>\n")
    return "".join(parts)


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, hidden: int, layers: int, heads: int, max_len: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max_len, tie_word_embeddings=False,
                      pad_token_id=0, eos_token_id=4, bos_token_id=None)
    return LlamaForCausalLM(cfg)


def train(model, sequences: list[list[int]], *, steps: int, batch_size: int, lr: float, seed: int, pad_id: int):
    """Next-token training on whole conversations (cosine schedule, AdamW)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    model.train()
    bar = tqdm(range(steps), desc="train teacher", mininterval=2.0)
    for _ in bar:
        pick = torch.randint(len(sequences), (batch_size,), generator=gen).tolist()
        width = max(len(sequences[i]) for i in pick)
        ids = torch.full((batch_size, width), pad_id)
        for j, i in enumerate(pick):
            ids[j, : len(sequences[i])] = torch.tensor(sequences[i])
        attn = (ids != pad_id).long()
        labels = ids.masked_fill(attn == 0, -100)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return float(loss.item())
