#!/usr/bin/env python
"""Ask the teacher a fixed list of prompts and keep its own sampled answers as a chat dataset.

Each prompt (one per line of --prompts) becomes a [user, assistant] conversation
whose assistant turn is the teacher's answer: rendered with the chat template
(--chat-template, else the tokenizer's), continued by `generate` with seeded
sampling (--temperature, --top-p, at most --max-new-tokens), cut at the first
end-of-sequence token. The same options give the same answers on the same
software. Writes a parquet with a `messages` column, the layout of the demo
dataset and of Hub chat datasets.
"""
from __future__ import annotations

import click
import torch

from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.demo.dataset_file import write_conversations
from logit_lineage.distill.answers import GenerationSettings, generate_answers, read_prompts
from logit_lineage.teacher.load import load_teacher, load_tokenizer

DEFAULTS = schema_defaults("distill", "generate")


@click.command(help=__doc__)
@click.option("--teacher", required=True, help="Hub id, local directory, .gguf file or pkg:<package>/<file>.")
@click.option("--revision", default=None, help="Teacher revision (Hub ids only).")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Jinja chat template instead of the tokenizer's (use the extraction's).")
@click.option("--prompts", "prompts_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Text file, one prompt per line (# comments and blank lines ignored).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N prompts.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=DEFAULTS["max_new_tokens"], show_default=True)
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=DEFAULTS["temperature"],
              show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=DEFAULTS["top_p"], show_default=True,
              help="Nucleus sampling of the answers.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS["batch_size"], show_default=True)
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default=schema_defaults("distill")["dtype"], show_default=True)
@click.option("--device", default=schema_defaults("distill")["device"], show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--output", type=click.Path(dir_okay=False), required=True, help="Conversations parquet.")
@main_guard
def main(teacher, revision, chat_template, prompts_path, limit, max_new_tokens, temperature, top_p, batch_size,
         seed, dtype, device, threads, output):
    if threads:
        torch.set_num_threads(threads)
    prompts = read_prompts(prompts_path, limit)
    tokenizer = load_tokenizer(teacher, revision, chat_template)
    model = load_teacher(teacher, revision=revision, dtype=dtype, device=device)
    settings = GenerationSettings(seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  batch_size=batch_size)
    conversations, stats = generate_answers(model, tokenizer, prompts, settings)
    write_conversations(output, conversations)
    log.info("%s: %d conversations, %d answer tokens, %d cut at --max-new-tokens %d", output,
             stats["conversations"], stats["new_tokens"], stats["truncated"], max_new_tokens)
    for conv in conversations[:2]:
        log.info("example: %r → %r", conv[0]["content"], conv[1]["content"])


if __name__ == "__main__":
    main()
