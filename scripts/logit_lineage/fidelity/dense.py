"""Dense teacher logits for a seeded sample of the kept (assistant) tokens of a shard.

Alignment is the compressed records': the entry for the token at position t
holds the logits computed at position t − 1 (the distribution that predicts
token t). Only the examples that contain a sampled token are run, in
token-budget batches over the shard's length order; the lm head runs only on
the sampled positions (the extractor's `decoder_hidden` + `head_logits`, so
softcapping and logit scales are applied exactly as in extraction).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from logit_lineage.teacher.batching import plan_batches
from logit_lineage.teacher.data import Row
from logit_lineage.teacher.load import decoder_hidden, head_logits


@dataclass
class Pick:
    """One sampled token: shard row, its rank among the row's kept tokens, its position."""

    row: int
    token_index: int
    position: int


def sample_tokens(rows: list[Row], n: int, seed: int, stream: int = 0) -> list[Pick]:
    """`n` kept tokens drawn uniformly without replacement over the shard (all if fewer).

    The draw depends only on (seed, stream) and the rows' kept counts, so a
    rerun samples the same tokens; picks come sorted by (row, position).
    """
    counts = np.array([len(r.kept) for r in rows], dtype=np.int64)
    total = int(counts.sum())
    rng = np.random.default_rng([int(seed), int(stream)])
    flat = np.sort(rng.choice(total, size=min(n, total), replace=False)) if total else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    row_of = np.searchsorted(starts, flat, side="right") - 1
    return [Pick(int(r), int(f - starts[r]), int(rows[r].kept[f - starts[r]])) for r, f in zip(row_of, flat)]


@torch.inference_mode()
def dense_logits(model, rows: list[Row], picks: list[Pick], *, token_budget: int, max_batch_size: int,
                 pad_id: int) -> list[torch.Tensor]:
    """Float32 logits [vocab] for every pick (in picks' order), the distribution for token t from t − 1."""
    dev = next(model.parameters()).device
    by_row: dict[int, list[int]] = {}
    for n, p in enumerate(picks):
        by_row.setdefault(p.row, []).append(n)
    order = sorted(by_row)  # shard rows are length-sorted, so batches pad little
    lengths = np.array([len(rows[r].ids) for r in order], dtype=np.int64)
    out: list[torch.Tensor | None] = [None] * len(picks)
    bar = tqdm(total=len(picks), unit="tok", desc="dense logits", mininterval=2.0)
    for batch in plan_batches(lengths, token_budget, max_batch_size):
        batch_rows = [order[b] for b in batch]
        width = max(len(rows[r].ids) for r in batch_rows)
        input_ids = torch.full((len(batch_rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch_rows), width), dtype=torch.long)
        for j, r in enumerate(batch_rows):
            input_ids[j, : len(rows[r].ids)] = torch.from_numpy(rows[r].ids)
            attention[j, : len(rows[r].ids)] = 1
        hidden = decoder_hidden(model, input_ids.to(dev), attention.to(dev))
        js, ts, targets = [], [], []
        for j, r in enumerate(batch_rows):
            for n in by_row[r]:
                js.append(j)
                ts.append(picks[n].position - 1)  # the row for token t comes from position t − 1
                targets.append(n)
        h = hidden[torch.tensor(js, device=dev), torch.tensor(ts, device=dev)]
        logits = head_logits(model, h).cpu()
        for n, row_logits in zip(targets, logits):
            out[n] = row_logits.clone()
        bar.update(len(targets))
    bar.close()
    return out
