"""Domain logic of the distillation chain: teacher loading, chat tokenization, batching, compression."""
