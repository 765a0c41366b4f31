"""Domain logic of the distillation chain: generated answers, lengths and shard plans,
per-shard extraction and the summary. The teacher layer it runs on (loading, chat
tokenization, datasets, batching, and the codec that compresses the logits) is
`logit_lineage.teacher`."""
