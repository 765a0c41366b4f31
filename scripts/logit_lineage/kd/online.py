"""Online distillation: sparse targets straight from a live teacher's logits, in one call.

`sparse_targets(teacher_logits, mask, seed=…)` compresses the teacher's rows exactly as
extraction does (nucleus + Gumbel-top-k tail sample with its threshold, noise seeded per
(seed, example index, 64-token block)), encodes them in the shard format (version 2's
uint16 values or version 3's dithered 8-bit codes) and decodes them again, so the
`SparseTargets` it returns are, bit for bit, what a shard written from the same logits
would give the loader. The extraction parameters default to the `distill` section of the
config schema (their one home).

`compressed_records` turns `compress_rows` output into the records the shard writer takes
(`formats.logits.build_table` + `write_logits_parquet`), so a training loop can also write
shards of what it saw; `shard_params` gives the metadata a written shard must carry.
"""
from __future__ import annotations

import numpy as np
import torch

from logit_lineage.common.schema import schema_defaults
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.logits import (
    ROW_FIELDS,
    SUPPORTED_VERSIONS,
    ExampleRecord,
    LogitsShard,
    build_table,
    records_from_rows,
)
from logit_lineage.formats.params import CompressionParams
from logit_lineage.kd.targets import SparseTargets, collate_targets, example_targets
from logit_lineage.teacher.compress import NOISE_BLOCK, BlockNoise, Compressed, Workspace, compress_rows

ROWS_PER_CHUNK = 1 << 22  # logits per compression step (as extraction on CPU): bounds the [rows, V] buffers


def extraction_defaults() -> dict:
    """top_p, top_p_max_elements, sampled_n and format_version as the config schema sets them."""
    return CompressionParams.from_config(schema_defaults("distill")).as_dict()


def shard_params(vocab_size: int, seed: int, *, top_p: float | None = None, top_p_max_elements: int | None = None,
                 sampled_n: int | None = None, **extra) -> dict:
    """The `logit_lineage.params` metadata of a shard written from a training loop (the keys
    every reader requires; defaults from the schema; `extra` keys are recorded as given)."""
    given = {"top_p": None if top_p is None else float(top_p),
             "top_p_max_elements": None if top_p_max_elements is None else int(top_p_max_elements),
             "sampled_n": None if sampled_n is None else int(sampled_n)}
    c = CompressionParams.from_config(extraction_defaults() | {k: v for k, v in given.items() if v is not None})
    return {"vocab_size": int(vocab_size), "index_high_bits": high_bits_for_vocab(int(vocab_size)),
            **c.metadata_params(), "seed": int(seed),
            "alignment": "row for token t is computed at position t-1", **extra}


def compressed_records(compressed: Compressed | list[Compressed], positions, *, indices=None,
                       token_ids=None) -> list[ExampleRecord]:
    """Records for the shard writer from `compress_rows` output.

    compressed: one `Compressed` (or a list of them, concatenated in order) whose rows are the
    kept tokens of the examples one after the other. positions: per example, the kept
    positions t (row t−1 of the teacher's logits gave token t's row here). indices: per
    example, its index (default 0, 1, …); the version-3 rounding and the sampler's noise are
    seeded by it. token_ids: per example, the tokens at those positions (default 0).
    """
    parts = compressed if isinstance(compressed, (list, tuple)) else [compressed]
    rows = {name: torch.cat([getattr(c, name) for c in parts]).cpu().numpy() for name in ROW_FIELDS} if parts else {}
    positions = [np.asarray(p, dtype=np.int64) for p in positions]
    indices = list(range(len(positions))) if indices is None else [int(i) for i in indices]
    if token_ids is None:
        token_ids = [np.zeros(len(p), dtype=np.int64) for p in positions]
    if len(indices) != len(positions) or len(token_ids) != len(positions):
        raise ValueError(f"{len(positions)} examples' positions, {len(indices)} indices, {len(token_ids)} token_ids")
    if not parts:
        if sum(len(p) for p in positions):
            raise ValueError("no compressed rows for kept positions")
        return [_empty_record(i) for i in indices]
    return records_from_rows(rows, indices, positions, [np.asarray(t, dtype=np.int64) for t in token_ids])


def _empty_record(index: int) -> ExampleRecord:
    z = np.zeros(0, np.int64)
    return ExampleRecord(index=index, positions=z.astype(np.int32), token_ids=z, top_counts=z, top_ids=z,
                         top_logits=np.zeros(0, np.float32), sampled_counts=z, sampled_ids=z,
                         sampled_logits=np.zeros(0, np.float32), logsumexp=np.zeros(0), threshold=np.zeros(0))


def _kept(teacher_logits: torch.Tensor, mask) -> tuple[list[np.ndarray], torch.Tensor]:
    """Per example the kept positions t, and the teacher's [B, L, V] view."""
    if teacher_logits.dim() == 2:  # one row per token: row r is position r + 1 of one example
        logits = teacher_logits[None]
        if mask is not None:
            mask = torch.as_tensor(mask)
            if mask.shape != teacher_logits.shape[:1]:
                raise ValueError(f"mask {tuple(mask.shape)} does not match [N] = {teacher_logits.shape[0]} rows")
            keep = mask.bool().cpu().numpy()
        else:
            keep = np.ones(teacher_logits.shape[0], dtype=bool)
        return [np.flatnonzero(keep) + 1], logits
    if teacher_logits.dim() != 3:
        raise ValueError(f"teacher logits must be [B, L, V] or [N, V], got {tuple(teacher_logits.shape)}")
    b, length = teacher_logits.shape[:2]
    if mask is None:
        keep = np.ones((b, length), dtype=bool)
    else:
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != (b, length):
            raise ValueError(f"mask {tuple(mask.shape)} does not match the logits' [B, L] = {(b, length)}")
        keep = mask.bool().cpu().numpy().copy()
    keep[:, 0] = False  # no row predicts token 0
    return [np.flatnonzero(k) for k in keep], teacher_logits


@torch.no_grad()
def sparse_targets(
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    seed: int,
    format_version: int | None = None,
    top_p: float | None = None,
    top_p_max_elements: int | None = None,
    sampled_n: int | None = None,
    input_ids: torch.Tensor | None = None,
    first_index: int = 0,
) -> SparseTargets:
    """Sparse KD targets from a live teacher's logits, as a shard written from them would load.

    teacher_logits: [B, L, V], the teacher's logits for a batch of inputs (row t predicts
    token t + 1); or [N, V], one row per token of one sequence.
    mask: [B, L] bool over the input's tokens (e.g. the assistant mask or the attention
    mask): token t is a target when mask[b, t], its distribution is the teacher's row t − 1,
    so token 0 never is; None keeps tokens 1 … L − 1. For [N, V] logits a [N] mask over rows
    (row r is position r + 1).
    seed: the sampler's and the rounding's seed; with `first_index`, batch row b is example
    `first_index + b`, and its noise depends on (seed, example, 64-token block) only. Use a
    new seed (or first_index) every step, or the tail samples repeat their noise.
    format_version: 2 (uint16 values) or 3 (8-bit codes, subtractive dither); top_p,
    top_p_max_elements (the nucleus cap), sampled_n (tail samples): the extraction's
    parameters. Any left None takes the config schema's default.
    input_ids: [B, L] (or [N + 1]) token ids, stored as the targets' `token_ids` (for
    `hard_label_loss`); zeros when not given.

    Returns `SparseTargets` [B, T] on the logits' device; `kd_loss(student_logits, targets)`
    compares position t with the student's row t − 1, as for a shard.
    """
    d = extraction_defaults()
    version = int(d["format_version"] if format_version is None else format_version)
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"format_version must be one of {SUPPORTED_VERSIONS}, got {format_version!r}")
    top_p = float(d["top_p"] if top_p is None else top_p)
    cap = int(d["top_p_max_elements"] if top_p_max_elements is None else top_p_max_elements)
    k = int(d["sampled_n"] if sampled_n is None else sampled_n)
    if not 0 < top_p <= 1 or not 1 <= cap <= 255 or not 0 <= k <= 255:
        raise ValueError(f"need 0 < top_p ≤ 1, 1 ≤ top_p_max_elements ≤ 255, 0 ≤ sampled_n ≤ 255; got "
                         f"{top_p}, {cap}, {k}")
    positions, logits = _kept(teacher_logits, mask)
    vocab = int(logits.shape[-1])
    if input_ids is None:
        token_ids = [np.zeros(len(p), dtype=np.int64) for p in positions]
    else:
        ids = torch.as_tensor(input_ids).cpu().numpy().reshape(len(positions), -1)
        token_ids = [ids[j][p] for j, p in enumerate(positions)]
    indices = [first_index + j for j in range(len(positions))]

    # The extraction's compression: 64-token noise blocks, chunks of whole blocks.
    units = [(j, b // NOISE_BLOCK, pos[b: b + NOISE_BLOCK]) for j, pos in enumerate(positions)
             for b in range(0, len(pos), NOISE_BLOCK)]
    max_rows = max(NOISE_BLOCK, ROWS_PER_CHUNK // max(vocab, 1))
    dev = logits.device
    generator = torch.Generator(device=dev)
    workspace = Workspace()
    done: list[Compressed] = []
    chunk: list = []
    for unit in units + [None]:
        if chunk and (unit is None or sum(len(u[2]) for u in chunk) + len(unit[2]) > max_rows):
            js = torch.from_numpy(np.concatenate([np.full(len(pos), j) for j, _, pos in chunk])).to(dev)
            ts = torch.from_numpy(np.concatenate([pos for _, _, pos in chunk])).to(dev)
            noise = BlockNoise(seed, [(indices[j], block, len(pos)) for j, block, pos in chunk], generator, dev)
            done.append(compress_rows(logits[js, ts - 1].float(), noise, top_p=top_p, cap=cap, k=k,
                                      workspace=workspace))
            chunk = []
        if unit is not None:
            chunk.append(unit)
    records = compressed_records(done, positions, indices=indices, token_ids=token_ids)
    params = shard_params(vocab, seed, top_p=top_p, top_p_max_elements=cap, sampled_n=k)
    shard = LogitsShard.from_table(build_table(records, vocab, version=version, seed=seed), params)
    targets = collate_targets([example_targets(ex) for ex in shard], vocab_size=vocab)
    return targets.to(dev)
