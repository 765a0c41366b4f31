#!/usr/bin/env python
"""Build the demo teacher: train a BPE tokenizer with a {% generation %} chat
template on the demo conversations, train a tiny Llama on them briefly (so its
next-token distributions are peaked), and save both with save_pretrained."""
from __future__ import annotations

import json

import click
import pyarrow.parquet as pq
import torch

from logit_lineage.common.atomic import atomic_dir
from logit_lineage.common.cli import log, main_guard
from logit_lineage.common.schema import schema_defaults
from logit_lineage.demo.teacher import build_model, render, train, train_tokenizer

DEFAULTS = schema_defaults("demo")  # the config's defaults: one home, the schemas


@click.command(help=__doc__)
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Conversations parquet (from make_demo_dataset.py).")
@click.option("--output", type=click.Path(file_okay=False), required=True,
              help="Directory for the teacher (model, tokenizer, demo_training.json).")
@click.option("--vocab-size", type=int, default=DEFAULTS["vocab_size"], show_default=True)
@click.option("--hidden-size", type=int, default=DEFAULTS["hidden_size"], show_default=True)
@click.option("--num-layers", type=int, default=DEFAULTS["num_layers"], show_default=True)
@click.option("--num-heads", type=int, default=DEFAULTS["num_heads"], show_default=True)
@click.option("--steps", type=int, default=DEFAULTS["train_steps"], show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS["train_batch_size"], show_default=True)
@click.option("--lr", type=float, default=DEFAULTS["learning_rate"], show_default=True)
@click.option("--max-len", type=int, default=schema_defaults("distill")["max_seq_len"], show_default=True)
@click.option("--seed", type=int, default=schema_defaults("config")["seed"], show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
@main_guard
def main(dataset, output, vocab_size, hidden_size, num_layers, num_heads, steps, batch_size, lr,
         max_len, seed, threads):
    if threads:
        torch.set_num_threads(threads)
    convs = pq.read_table(dataset).column("messages").to_pylist()
    tokenizer = train_tokenizer([render(c) for c in convs], vocab_size)
    sequences = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"][:max_len]
                 for c in convs]
    model = build_model(len(tokenizer), hidden_size, num_layers, num_heads, max_len, seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    loss = train(model, sequences, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                 pad_id=tokenizer.pad_token_id)
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "demo_training.json").write_text(json.dumps({"final_loss": loss, "steps": steps}, indent=2))
    log.info("teacher: vocab %d, %d params, final loss %.3f → %s", len(tokenizer),
             sum(p.numel() for p in model.parameters()), loss, output)


if __name__ == "__main__":
    main()
