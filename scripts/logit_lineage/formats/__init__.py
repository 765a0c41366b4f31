"""On-disk formats read by more than one chain or by users: packed ids, quantization,
the compressed-logits parquet and its reader, the tail weights and expectation estimate
(`tail`, the one implementation every user calls), dense dumps (safetensors), the Hub
dataset card (`card_file`). Only the dense dumps and the safetensors writer use torch;
the reader needs numpy and pyarrow only."""
