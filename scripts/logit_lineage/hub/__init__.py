"""Publishing the compressed-logit shards to a Hugging Face Hub dataset repo.

One module per concern: `settings` (the config section), `target` (repo, client,
credentials), `retry` (backoff on transient Hub errors), `naming` (paths in the
repo and commit batches), `publish` (create repo, pre-upload, commit), `card`
(the dataset card's content), `shard_metadata` (what the card reads from the
shards) and `verify` (a published repo against local files).
"""
