"""Benchmark 4: extraction throughput, compressed-logits path vs a bare teacher forward (CPU).

Over the same token-budget batches of a length-sorted demo shard:
- ours: `distill.extract.compress_batch` (forward, lm head on kept positions,
  compress_rows with its block noise, per-example records) — what the extract_logits rule
  runs per batch, minus the parquet write;
- baseline: the bare forward — the same padded batch through `decoder_hidden`
  and `head_logits` on the same kept positions in the same chunks, nothing else.
Whole passes alternate (bare, ours, ours, bare, …); figures are medians.
Then one more pass of compress_batch with timers wrapped around the functions
it calls (patched into distill.extract's namespace for that pass only) says
where the time goes, and torch's profiler lists the heaviest operators.

The demo teacher is tiny (0.4 M parameters, vocab ~1 k), so its forward costs
little next to per-token work over the vocabulary. A second case runs the same
comparison for a real-sized teacher on the same CPU: the Qwen2-0.5B-shaped
model of gpu_extraction.py (random weights, float32, vocab 151,936, logits
rescaled to be peaked) on a few hundred synthetic kept tokens.
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch

import logit_lineage.distill.extract as extract
from benchlib import Result, fmt_rate, paired_times
from context import CAP, SAMPLED_N, SEED, TOP_P, BenchContext
from logit_lineage.distill.extract import ExtractionSettings, _chunks, _units, batch_hidden, compress_batch
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.batching import plan_batches
from logit_lineage.teacher.compress import Workspace
from logit_lineage.teacher.load import head_logits

BENCH = "4 extraction (CPU)"
TOKEN_BUDGET = 4096
MAX_BATCH = 256
PATCHED = ("decoder_hidden", "head_logits", "compress_rows", "_records")


@torch.inference_mode()
def bare_batch(model, rows, settings: ExtractionSettings, pad_id: int, lse: bool = False) -> int:
    """compress_batch's forward and lm head, on the same positions and chunks, and nothing else
    (with `lse`, also the float64 logsumexp of every row: the least any exact compression does)."""
    dev = next(model.parameters()).device
    hidden = batch_hidden(model, rows, pad_id)
    n = 0
    for chunk in _chunks(_units(rows), settings.head_chunk_rows):
        js = np.concatenate([np.full(len(pos), j) for j, _, pos in chunk])
        ts = np.concatenate([pos for _, _, pos in chunk])
        logits = head_logits(model, hidden[torch.from_numpy(js).to(dev), torch.from_numpy(ts - 1).to(dev)])
        if lse:
            torch.logsumexp(logits.double(), dim=-1)
        n += logits.shape[0]
    return n


def setup(ctx: BenchContext):
    model, tok, _ = ctx.demo
    vocab = int(model.get_output_embeddings().weight.shape[0])
    rows = ctx.demo_shard_rows
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=TOP_P, top_p_max_elements=CAP, sampled_n=SAMPLED_N), seed=SEED,
                                  token_budget=TOKEN_BUDGET, max_batch_size=MAX_BATCH, head_chunk_rows=max(1, (1 << 22) // vocab))
    batches = plan_batches(np.array([len(r.ids) for r in rows]), TOKEN_BUDGET, MAX_BATCH)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return model, vocab, rows, settings, [[rows[i] for i in b] for b in batches], pad


def breakdown(model, batches, settings, pad) -> tuple[dict[str, float], float]:
    """Seconds per function called by compress_batch over one pass, and the pass's total."""
    spent: dict[str, float] = defaultdict(float)
    originals = {name: getattr(extract, name) for name in PATCHED}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    ws, gen = Workspace(), torch.Generator()
    try:
        for name, fn in originals.items():
            setattr(extract, name, timed(name, fn))
        t0 = time.perf_counter()
        for b in batches:
            compress_batch(model, b, settings, pad, ws, gen)
        total = time.perf_counter() - t0
    finally:
        for name, fn in originals.items():
            setattr(extract, name, fn)
    return dict(spent), total


def operator_profile(model, batches, settings, pad, top: int = 10) -> str:
    from torch.profiler import ProfilerActivity, profile

    ws, gen = Workspace(), torch.Generator()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[: max(1, len(batches) // 2)]:
            compress_batch(model, b, settings, pad, ws, gen)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40)


def real_size_case(ctx: BenchContext, kept_tokens: int = 256) -> Result:
    """compress_batch vs bare forward for a 0.5B-parameter, vocab-151,936 teacher on this CPU."""
    import gpu_extraction as g

    dev = torch.device("cpu")
    model = g.build_model(g.QWEN2_05B, dev, torch.float32, SEED)
    vocab = g.QWEN2_05B["vocab_size"]
    rows = g.synthetic_rows(kept_tokens, vocab, SEED, 256, 64, 1024)
    g.scale_logits(model, rows, 8.0)
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=TOP_P, top_p_max_elements=CAP, sampled_n=SAMPLED_N), seed=SEED,
                                  token_budget=2048, max_batch_size=MAX_BATCH, head_chunk_rows=max(1, (1 << 22) // vocab))
    batches = plan_batches(np.array([len(r.ids) for r in rows]), 2048, MAX_BATCH)
    batch_rows = [[rows[i] for i in b] for b in batches]
    tokens = sum(len(r.kept) for r in rows)
    ws, gen = Workspace(), torch.Generator()
    ctx.log(f"[bench 4] 0.5B-parameter teacher on CPU: {len(rows)} sequences, {tokens} kept tokens")

    def ours():
        for b in batch_rows:
            compress_batch(model, b, settings, 0, ws, gen)

    def bare():
        for b in batch_rows:
            bare_batch(model, b, settings, 0)

    timing = paired_times(bare, ours, ctx.repeats)
    overhead = timing.ratio_b_over_a - 1.0
    return Result(BENCH, f"0.5B teacher V={vocab:,}", "kept tokens/s", fmt_rate(tokens / timing.b_med),
                  fmt_rate(tokens / timing.a_med) + " bare", f"{overhead:+.0%} time", "overhead ≤ 15% on CPU",
                  overhead <= 0.15,
                  f"Qwen2-0.5B shape (gpu_extraction.py), random weights rescaled to logit std 8, float32; "
                  f"{len(rows)} synthetic sequences, {tokens} kept tokens, {len(batches)} batch(es)")


def run(ctx: BenchContext) -> list[Result]:
    model, vocab, rows, settings, batches, pad = setup(ctx)
    tokens = int(sum(len(r.kept) for r in rows))
    positions = int(sum(len(b) * max(len(r.ids) for r in b) for b in batches))
    ctx.log(f"[bench 4] {len(rows)} examples, {tokens:,} kept tokens, {len(batches)} batches, vocab {vocab}")
    ws, gen = Workspace(), torch.Generator()

    def ours():
        for b in batches:
            compress_batch(model, b, settings, pad, ws, gen)

    def bare():
        for b in batches:
            bare_batch(model, b, settings, pad)

    def floor():
        for b in batches:
            bare_batch(model, b, settings, pad, lse=True)

    timing = paired_times(bare, ours, ctx.repeats)
    overhead = timing.ratio_b_over_a - 1.0
    least = paired_times(bare, floor, ctx.repeats).ratio_b_over_a - 1.0
    forward_us = timing.a_med / tokens * 1e6
    # The target is for a teacher whose forward costs what a real one's does (the 0.5B row
    # below). This toy's whole forward costs about as much per kept token as reading its
    # vocabulary a few times, so its row shows the figure and the floor, with no target.
    out = [Result(BENCH, f"demo teacher V={vocab:,}", "kept tokens/s", fmt_rate(tokens / timing.b_med),
                  fmt_rate(tokens / timing.a_med) + " bare", f"{overhead:+.0%} time",
                  f"none (toy; float64 lse alone: +{least:.0%})", None,
                  f"{len(rows)} examples, {tokens:,} kept tokens of {positions:,} computed positions, "
                  f"{len(batches)} batches (budget {TOKEN_BUDGET}), {torch.get_num_threads()} threads; "
                  f"model {sum(p.numel() for p in model.parameters()):,} params, bare forward "
                  f"{forward_us:.0f} µs per kept token; the floor is the bare forward plus the spec's "
                  f"float64 logsumexp of each kept row (no nucleus, no sample)")]

    spent, total = breakdown(model, batches, settings, pad)
    forward = spent.get("decoder_hidden", 0.0) + spent.get("head_logits", 0.0)
    parts = {
        "teacher forward (body + lm head)": forward,
        "compress_rows (with its noise draws)": spent.get("compress_rows", 0.0),
        "_records (per-example assembly)": spent.get("_records", 0.0),
    }
    parts["other (padding, gathers, .numpy(), slicing)"] = max(0.0, total - sum(parts.values()))
    lines = [f"Benchmark 4 — where compress_batch's time goes (one instrumented pass, {total:.2f} s):"]
    for name, sec in sorted(parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<46} {sec:7.3f} s  {sec / total:6.1%}")
    extra = total - forward
    lines.append(f"  → compression work beyond the forward: {extra:.3f} s = {extra / forward:.0%} of the forward")
    lines.append("")
    lines.append("torch profiler, compress_batch over half the batches (self CPU time):")
    lines.append(operator_profile(model, batches, settings, pad))
    ctx.details.append("\n".join(lines))
    top = max((k for k in parts if not k.startswith("teacher")), key=parts.get)
    out.append(Result(BENCH, f"demo teacher V={vocab:,}", "largest non-forward cost", top,
                      f"forward {forward / total:.0%}", f"{parts[top] / total:.0%} of compress_batch", "", None,
                      "breakdown and operator profile printed under the table"))
    out.append(real_size_case(ctx))
    return out
