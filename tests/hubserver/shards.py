"""Small shards for hub tests, written with the distillation chain's codec (real schema and metadata)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PARAMS = {
    "teacher": "demo", "dataset": "demo", "top_p": 0.98, "top_p_max_elements": 100,
    "sampled_n": 4, "seed": 1337, "vocab_size": 300,
}


def make_shard(path: Path, index: int, *, rows: int = 3, params: dict | None = None, salt: int = 0) -> Path:
    from logit_lineage.formats.indices import high_bits_for_vocab
    from logit_lineage.formats.logits import ExampleRecord, build_table, write_logits_parquet

    params = {**PARAMS, **(params or {}), "shard": index}
    params["index_high_bits"] = high_bits_for_vocab(params["vocab_size"])
    rng = np.random.default_rng([index, salt])
    records = []
    for r in range(rows):
        t = 2 + r
        top_counts = rng.integers(1, 4, t)
        sampled_counts = np.full(t, 2)
        records.append(ExampleRecord(
            index=index * 1000 + r,
            positions=np.arange(1, t + 1), token_ids=rng.integers(0, params["vocab_size"], t),
            top_counts=top_counts, top_ids=rng.integers(0, params["vocab_size"], top_counts.sum()),
            top_logits=rng.normal(size=top_counts.sum()).astype(np.float32),
            sampled_counts=sampled_counts, sampled_ids=rng.integers(0, params["vocab_size"], 2 * t),
            sampled_logits=rng.normal(size=2 * t).astype(np.float32),
            logsumexp=rng.normal(size=t), threshold=rng.normal(size=t),
        ))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_logits_parquet(path, build_table(records, params["vocab_size"]), params)
    return path


def make_shards(folder: Path, n: int, **kwargs) -> list[Path]:
    return [make_shard(folder / f"shard-{i:05d}.parquet", i, **kwargs) for i in range(n)]
