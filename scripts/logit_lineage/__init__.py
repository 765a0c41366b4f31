"""logit-lineage: compressed teacher logits for knowledge distillation, and the
workflow's shared library.

Reading a shard needs numpy and pyarrow only::

    from logit_lineage import LogitsShard
    shard = LogitsShard("shard-00000.parquet")
    example = shard.example(0)          # DecodedExample: ids, dequantized logits, threshold

Training code uses `logit_lineage.kd` (torch): a dataset over shards, a collate
function and unbiased sparse KD losses. One subpackage per workflow chain
(`distill`, `hub`, `experts`, `sortgrid`, `fidelity`, `student`, `demo`);
`formats` holds the on-disk formats and `teacher` the shared teacher layer
(loading, chat tokenization, datasets, batching).
"""
from logit_lineage.formats.logits import FORMAT_VERSION, DecodedExample, LogitsShard, read_metadata
from logit_lineage.formats.reader import (
    TokenDistribution,
    estimate_expectation,
    inclusion_probabilities,
    nucleus_stats,
    tail_weights,
    token_distributions,
)

__all__ = [
    "FORMAT_VERSION",
    "DecodedExample",
    "LogitsShard",
    "TokenDistribution",
    "estimate_expectation",
    "inclusion_probabilities",
    "nucleus_stats",
    "read_metadata",
    "tail_weights",
    "token_distributions",
]
