"""On-disk formats read by more than one chain or by users: packed ids, quantization,
the compressed-logits parquet and its reader, dense dumps (safetensors), the Hub
dataset card (`card_file`), checkpoint layouts. Nothing here imports torch, except the
checkpoint-layout converter."""
