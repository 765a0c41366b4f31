#!/usr/bin/env python
"""Benchmark 6 (GPU): extraction tokens/s of a ~0.5B model, compressed path vs bare forward.

Builds a Qwen2-0.5B-shaped causal LM from its config with random weights
(hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864, vocab 151,936, tied
embeddings) in bf16 on the GPU — no download, only torch + transformers and the
repo's scripts/ — and times, over the same token-budget batches of synthetic
sequences (log-normal lengths, the second half of each sequence kept, as an
assistant reply would be):
  ours  distill.extract.compress_batch (forward, lm head on kept positions,
        compress_rows with its block noise, records back on the CPU);
  bare  the same padded batches through decoder_hidden + head_logits on the same
        kept positions and chunks, nothing else.
Passes alternate (bare, ours, ours, bare, …); figures are medians. It runs once
per lm-head chunk size (--chunk-rows; "default" is what extract_logits.py uses:
2**26 // vocab rows on a GPU, 2**22 // vocab on a CPU — 441 and 27 rows at vocab
151,936 — which whole 64-token noise blocks turn into 384- and 64-row chunks).

Random weights give nearly uniform next-token distributions, unlike a trained
model; --logit-std rescales the final norm so the logits' standard deviation
across the vocabulary is that value (default 8: peaked, top-1 probability
mostly > 0.5; 0 leaves the random model as it is, the worst case for the
tail-sample pruning). The table prints the nucleus sizes it saw.

    python tests/bench/gpu_extraction.py              # H100: a few minutes
    python tests/bench/gpu_extraction.py --tiny       # CPU smoke test, seconds
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from logit_lineage.distill.extract import ExtractionSettings, _chunks, _units, batch_hidden, compress_batch
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.batching import padding_fraction, plan_batches
from logit_lineage.teacher.compress import Workspace
from logit_lineage.teacher.data import Row
from logit_lineage.teacher.load import decoder_hidden, head_logits

HERE = Path(__file__).resolve().parent

QWEN2_05B = dict(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32_768,
                 rope_theta=1_000_000.0, tie_word_embeddings=True)
TINY = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10_000.0, tie_word_embeddings=True)


def build_model(shape: dict, device: torch.device, dtype: torch.dtype, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(**shape, pad_token_id=0, bos_token_id=None, eos_token_id=1)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg)
    return model.to(dtype).eval()


@torch.inference_mode()
def scale_logits(model, rows: list[Row], target_std: float) -> float:
    """Rescale the final norm so logits across the vocabulary have std ≈ target_std."""
    dev = next(model.parameters()).device
    r = rows[0]
    ids = torch.from_numpy(r.ids[None, :]).to(dev)
    logits = head_logits(model, decoder_hidden(model, ids, torch.ones_like(ids))[0])
    std = float(logits.float().std(dim=-1).mean())
    if target_std > 0:
        model.get_decoder().norm.weight.mul_(target_std / std)
    return std


def synthetic_rows(n_tokens: int, vocab: int, seed: int, median: int, lo: int, hi: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows, kept = [], 0
    while kept < n_tokens:
        length = int(np.clip(rng.lognormal(math.log(median), 0.6), lo, hi))
        ids = rng.integers(2, vocab, length)
        keep = np.arange(length // 2, length)
        rows.append(Row(len(rows), ids, keep))
        kept += len(keep)
    return sorted(rows, key=lambda r: (len(r.ids), r.index))


@torch.inference_mode()
def bare_batch(model, rows, settings: ExtractionSettings, pad_id: int) -> None:
    dev = next(model.parameters()).device
    hidden = batch_hidden(model, rows, pad_id)
    for chunk in _chunks(_units(rows), settings.head_chunk_rows):
        js = np.concatenate([np.full(len(pos), j) for j, _, pos in chunk])
        ts = np.concatenate([pos for _, _, pos in chunk])
        head_logits(model, hidden[torch.from_numpy(js).to(dev), torch.from_numpy(ts - 1).to(dev)])


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed_pass(fn, dev) -> float:
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


PATCHED = ("decoder_hidden", "head_logits", "compress_rows", "_records")


def breakdown(fn, dev) -> dict[str, float]:
    """Seconds per function compress_batch calls, over one pass of `fn` (synchronized timers)."""
    import logit_lineage.distill.extract as extract

    spent = {name: 0.0 for name in PATCHED}
    originals = {name: getattr(extract, name) for name in PATCHED}

    def timed(name, f):
        def wrapper(*a, **kw):
            sync(dev)
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                sync(dev)
                spent[name] += time.perf_counter() - t0
        return wrapper

    try:
        for name, f in originals.items():
            setattr(extract, name, timed(name, f))
        total = timed_pass(fn, dev)
    finally:
        for name, f in originals.items():
            setattr(extract, name, f)
    spent["other"] = total - sum(spent.values())
    spent["total"] = total
    return spent


def peak_memory(fn, dev) -> int | None:
    if dev.type != "cuda":
        return None
    sync(dev)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    fn()
    sync(dev)
    return torch.cuda.max_memory_allocated(dev) - base


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny model and data (CPU smoke test)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float32", "float16"],
                    help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--tokens", type=int, default=None, help="kept tokens per pass (default 32768; tiny 256)")
    ap.add_argument("--token-budget", type=int, default=None, help="padded tokens per batch (default 32768)")
    ap.add_argument("--chunk-rows", default="default,1024,4096",
                    help="comma list of lm-head chunk sizes; 'default' = extract_logits.py's rule "
                         "(2**26 // vocab rows on GPU, 2**22 // vocab on CPU)")
    ap.add_argument("--logit-std", type=float, default=8.0, help="rescale logits to this std (0: leave)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--breakdown", action="store_true",
                    help="one more instrumented pass per chunk size: time per function compress_batch calls")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype or ("bfloat16" if dev.type == "cuda" else "float32"))
    shape = TINY if args.tiny else QWEN2_05B
    n_tokens = args.tokens or (256 if args.tiny else 32_768)
    budget = args.token_budget or (1024 if args.tiny else 32_768)
    repeats = 1 if args.tiny and args.repeats == 3 else args.repeats
    lengths = (48, 16, 128) if args.tiny else (768, 64, 4096)

    t0 = time.perf_counter()
    model = build_model(shape, dev, dtype, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    vocab = shape["vocab_size"]
    rows = synthetic_rows(n_tokens, vocab, args.seed, *lengths)
    raw_std = scale_logits(model, rows, args.logit_std)
    batches = plan_batches(np.array([len(r.ids) for r in rows]), budget, 256)
    batch_rows = [[rows[i] for i in b] for b in batches]
    kept = sum(len(r.kept) for r in rows)
    pad = padding_fraction(np.array([len(r.ids) for r in rows]), batches)
    setup_s = time.perf_counter() - t0

    machine = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "dtype": str(dtype).removeprefix("torch."), "params": n_params,
        "vocab": vocab, "kept_tokens": kept, "sequences": len(rows), "batches": len(batches),
        "token_budget": budget, "padding": pad, "logit_std_raw": raw_std, "logit_std": args.logit_std or raw_std,
        "setup_s": setup_s,
    }
    results = []
    for spec in [c.strip() for c in args.chunk_rows.split(",") if c.strip()]:
        # extract_logits.py's default: ~4M logits per chunk on CPU, ~64M on a GPU.
        chunk_rows = max(1, (1 << (26 if dev.type == "cuda" else 22)) // vocab) if spec == "default" else int(spec)
        cp = CompressionParams(format_version=2, top_p=0.98, top_p_max_elements=100, sampled_n=24)
        settings = ExtractionSettings(compression=cp, seed=args.seed,
                                      token_budget=budget, max_batch_size=256, head_chunk_rows=chunk_rows)
        ws, gen = Workspace(), torch.Generator(device=dev)
        nucleus: list[np.ndarray] = []

        def ours(collect=False):
            for b in batch_rows:
                recs = compress_batch(model, b, settings, 0, ws, gen)
                if collect:
                    nucleus.extend(r.top_counts for r in recs)

        def bare():
            for b in batch_rows:
                bare_batch(model, b, settings, 0)

        ours(collect=True)  # warm-up (and the nucleus sizes)
        bare()
        t_ours, t_bare = [], []
        for r in range(repeats):
            order = [("bare", bare), ("ours", ours)] if r % 2 == 0 else [("ours", ours), ("bare", bare)]
            for name, fn in order:
                (t_ours if name == "ours" else t_bare).append(timed_pass(fn, dev))
        parts = breakdown(ours, dev) if args.breakdown else None
        mem_ours = peak_memory(ours, dev)
        mem_bare = peak_memory(bare, dev)
        ws = None
        sizes = np.concatenate(nucleus)
        ratio = statistics.median(o / b for o, b in zip(t_ours, t_bare))
        results.append({
            "chunk_rows": spec if spec == "default" else chunk_rows,
            "effective_chunk_rows": max(64, chunk_rows // 64 * 64),  # whole 64-token blocks
            "ours_tok_s": kept / statistics.median(t_ours), "bare_tok_s": kept / statistics.median(t_bare),
            "overhead": ratio - 1.0, "ours_s": t_ours, "bare_s": t_bare,
            "peak_mem_ours": mem_ours, "peak_mem_bare": mem_bare,
            "nucleus_mean": float(sizes.mean()), "nucleus_median": float(np.median(sizes)),
            "nucleus_capped": float((sizes >= 100).mean()), "breakdown_s": parts,
        })
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    print(f"device: {machine['device']} · torch {machine['torch']} · {machine['dtype']} · "
          f"{n_params / 1e6:,.1f}M params · vocab {vocab:,}")
    print(f"data: {len(rows)} sequences, {kept:,} kept tokens, {len(batches)} batches of ≤ {budget:,} padded "
          f"tokens ({pad:.1%} padding); logits std {raw_std:.2f} raw → {machine['logit_std']:.2f}; "
          f"setup {setup_s:.0f} s; medians of {repeats} interleaved passes")
    head = f"{'lm-head chunk':<16}{'ours tok/s':>14}{'bare tok/s':>14}{'overhead':>10}" \
           f"{'peak mem ours':>15}{'peak mem bare':>15}{'nucleus mean/median/capped':>30}"
    print(head)
    print("-" * len(head))
    gb = lambda b: "n/a" if b is None else f"{b / 2**30:.2f} GiB"
    for r in results:
        label = f"{r['chunk_rows']} ({r['effective_chunk_rows']})" if r["chunk_rows"] == "default" \
            else str(r["chunk_rows"])
        print(f"{label:<16}{r['ours_tok_s']:>14,.0f}{r['bare_tok_s']:>14,.0f}{r['overhead']:>+10.0%}"
              f"{gb(r['peak_mem_ours']):>15}{gb(r['peak_mem_bare']):>15}"
              f"{r['nucleus_mean']:>14.1f} / {r['nucleus_median']:.0f} / {r['nucleus_capped']:.0%}")
    for r in results:
        parts = r["breakdown_s"]
        if parts:
            total = parts["total"]
            shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
                               if k != "total")
            print(f"breakdown, chunk {r['chunk_rows']}: {total:.2f} s per pass: {shares}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
