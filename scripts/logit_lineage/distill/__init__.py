"""Domain logic of the distillation chain: generated answers, lengths and shard plans,
compression, per-shard extraction and the summary. The teacher layer it runs on
(loading, chat tokenization, datasets, batching) is `logit_lineage.teacher`."""
