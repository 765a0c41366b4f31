"""Benchmark 2: bytes per token of the compressed-logits parquet vs dense bf16 logits.

Settings: top_p 0.98, nucleus cap 100, 24 tail samples (the defaults). A file's
size is the whole parquet as `write_logits_parquet` writes it (zstd level 3,
footer and metadata included) divided by the tokens it holds; dense bf16 is
2 bytes × vocab per token. Workloads:
- the demo teacher: `extract_shard` on a length-sorted demo shard (its vocab);
- vocab 151,936, peaked: Zipf-like rows (workloads.zipf_logits) and the demo
  teacher's rows embedded in that vocabulary, through compress_rows +
  build_table + write_logits_parquet, exactly as extraction encodes them;
- vocab 151,936, flat: every row's nucleus hits the cap (the format's largest
  records), to show the floor of the ratio.
"""
from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import torch

from benchlib import Result, fmt_bytes
from context import CAP, SAMPLED_N, SEED, TOP_P, BenchContext
from logit_lineage.distill.extract import ExtractionSettings, StopFlag, _records, extract_shard
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.logits import build_table, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.compress import BlockNoise, Workspace, compress_rows
from logit_lineage.teacher.data import Row
from workloads import embed_rows, zipf_logits

BENCH = "2 bytes/token"
VOCAB = 151_936
TOKENS_PER_EXAMPLE = 256
EXAMPLES = 8


def params(vocab: int) -> dict:
    return {"vocab_size": vocab, "index_high_bits": high_bits_for_vocab(vocab), "top_p": TOP_P,
            "top_p_max_elements": CAP, "sampled_n": SAMPLED_N, "seed": SEED, "teacher": "bench"}


def size_with_parquet_defaults(path) -> int:
    """The same table rewritten with parquet's default encodings (dictionary on, no byte-stream split).

    The anchor for the writer's choice: parquet stores uint16 as 32-bit integers, and
    dictionary encoding costs ~3.5 B/value in a small file (~2.0 only past ~1 M values),
    where plain byte-stream-split columns cost ~2.0 at any size.
    """
    table = pq.read_table(path)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=3)
    return len(buf.getvalue())


def encode_examples(logit_blocks, vocab: int, path) -> tuple[int, int, float]:
    """Compress each example's rows as extraction does and write one parquet; (bytes, tokens, mean nucleus)."""
    ws, gen = Workspace(), torch.Generator()
    rng = np.random.default_rng(SEED)
    records, tokens, nucleus = [], 0, []
    for e, logits in enumerate(logit_blocks):
        m = logits.shape[0]
        row = Row(e, rng.integers(0, vocab, m + 1), np.arange(1, m + 1))
        noise = BlockNoise.for_example(SEED, e, m, gen, logits.device)
        c = compress_rows(logits, noise, top_p=TOP_P, cap=CAP, k=SAMPLED_N, workspace=ws)
        records += _records([row], {name: getattr(c, name).numpy() for name in c.__dataclass_fields__})
        tokens += m
        nucleus.append(c.top_counts.numpy())
    write_logits_parquet(path, build_table(records, vocab), params(vocab))
    return path.stat().st_size, tokens, float(np.concatenate(nucleus).mean())


def _result(case: str, path, tokens: int, vocab: int, mean_nucleus: float, target: bool) -> Result:
    size = path.stat().st_size
    per_token = size / tokens
    dense = 2 * vocab
    ratio = dense / per_token
    default = size_with_parquet_defaults(path) / tokens
    return Result(BENCH, case, "bytes per token (parquet, zstd)", f"{per_token:,.1f} B", f"{dense:,} B (bf16)",
                  f"{ratio:,.0f}× smaller", "≥ 1,000× at V=151,936, peaked" if target else "",
                  (ratio >= 1000) if target else None,
                  f"{tokens:,} tokens, file {fmt_bytes(size)}, mean nucleus {mean_nucleus:.1f}; the same table "
                  f"with parquet's default encodings (dictionary): {default:,.1f} B/token ({dense / default:,.0f}×)")


def run(ctx: BenchContext) -> list[Result]:
    out = []
    # The demo teacher, through the real per-shard extraction.
    model, tok, _ = ctx.demo
    vocab = int(model.get_output_embeddings().weight.shape[0])
    rows = ctx.demo_shard_rows
    ctx.log(f"[bench 2] demo teacher: extract_shard over {len(rows)} examples")
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=TOP_P, top_p_max_elements=CAP, sampled_n=SAMPLED_N), seed=SEED,
                                  token_budget=4096, max_batch_size=256, head_chunk_rows=max(1, (1 << 22) // vocab))
    path = ctx.tmp / "demo-shard.parquet"
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    stats = extract_shard(model, rows, settings, params(vocab), path, pad, StopFlag(None))
    tc = pq.read_table(path, columns=["top_counts"]).column("top_counts").combine_chunks().values.to_numpy()
    out.append(_result(f"demo teacher V={vocab:,}", path, stats["tokens"], vocab, tc.mean(), False))

    n = TOKENS_PER_EXAMPLE
    ctx.log(f"[bench 2] V={VOCAB:,}: zipf, demo-embedded and flat rows, {EXAMPLES}×{n} tokens each")
    blocks = (zipf_logits(n, VOCAB, seed=SEED + 100 + e) for e in range(EXAMPLES))
    path = ctx.tmp / "zipf.parquet"
    _, tokens, mean_n = encode_examples(blocks, VOCAB, path)
    out.append(_result(f"zipf V={VOCAB:,}", path, tokens, VOCAB, mean_n, True))

    real = ctx.demo_logits(EXAMPLES * n)
    blocks = (embed_rows(real[e * n : (e + 1) * n], VOCAB, seed=SEED + e) for e in range(EXAMPLES))
    path = ctx.tmp / "demo-embedded.parquet"
    _, tokens, mean_n = encode_examples(blocks, VOCAB, path)
    out.append(_result(f"demo rows in V={VOCAB:,}", path, tokens, VOCAB, mean_n, True))

    blocks = (zipf_logits(n, VOCAB, seed=SEED + 200 + e, s_lo=1.0, s_hi=1.2) for e in range(EXAMPLES))
    path = ctx.tmp / "flat.parquet"
    _, tokens, mean_n = encode_examples(blocks, VOCAB, path)
    out.append(_result(f"flat (all capped) V={VOCAB:,}", path, tokens, VOCAB, mean_n, False))
    return out
