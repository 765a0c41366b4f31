"""Chain A domain logic: teacher loading, chat tokenization, batching, compression."""
