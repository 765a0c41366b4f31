"""Run one compression call in this (fresh) process and print its peak extra RSS as JSON.

Usage: python memprobe.py '{"method": "project"|"seed", "logits": "rows.npy",
                             "top_p": 0.98, "cap": 100, "k": 24, "seed": 1337}'

The input logits are loaded and a tiny call of the same method runs first (it
loads kernels and starts thread pools), then the RSS high-water mark is reset
and the measured call runs: its uniform draw, its buffers and its outputs all
count; the input rows do not.
"""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchlib import peak_since_reset, reset_peak
from logit_lineage.teacher.compress import BlockNoise, Workspace, compress_rows
from seed_reference import seed_compress_block

HERE = Path(__file__).resolve().parent


def project_call(logits: torch.Tensor, spec: dict, gen: torch.Generator):
    """What extraction does per chunk: compress with the chunk's block noise."""
    noise = BlockNoise.for_example(spec["seed"], 0, logits.shape[0], gen, logits.device)
    return compress_rows(logits, noise, top_p=spec["top_p"], cap=spec["cap"], k=spec["k"], workspace=Workspace())


def seed_call(logits: torch.Tensor, spec: dict, gen: torch.Generator):
    gen.manual_seed(spec["seed"])
    return seed_compress_block(logits, gen, top_p=spec["top_p"], cap=spec["cap"], k=spec["k"])


def main() -> None:
    spec = json.loads(sys.argv[1])
    if "threads" in spec:
        torch.set_num_threads(int(spec["threads"]))
    call = {"project": project_call, "seed": seed_call}[spec["method"]]
    logits = torch.from_numpy(np.load(spec["logits"]))
    gen = torch.Generator()
    call(torch.randn(2, 300), dict(spec, cap=min(spec["cap"], 50), k=min(spec["k"], 10)), gen)
    gc.collect()
    before = reset_peak()
    out = call(logits, spec, gen)
    peak = peak_since_reset()
    del out
    print(json.dumps({"peak_extra_bytes": peak - before, "rss_before": before}))


if __name__ == "__main__":
    main()
