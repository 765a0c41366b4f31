"""The dataset card's content: `configs` for `datasets`, parameters and lineage."""
from __future__ import annotations

import json
from pathlib import Path

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.card_file import CARD_KEY
from logit_lineage.formats.codes import ROUNDING_RULE
from logit_lineage.hub.naming import data_files_glob
from logit_lineage.hub.shard_metadata import read_shard_metadata


def summarize_shards(paths: list[str | Path]) -> dict:
    """Format version, shared parameters and row counts over all shards.

    Parameters that differ between shards (a shard number, say) are listed by
    name instead of being picked from one shard; a differing format version is
    an error, since one dataset must decode with one reader.
    """
    if not paths:
        raise LineageError("no shards given for the dataset card")
    metas = [read_shard_metadata(p) for p in paths]
    versions = {m["format_version"] for m in metas}
    if len(versions) != 1:
        raise LineageError(f"shards disagree on the format version: {sorted(versions)}", path=paths[0])
    keys = sorted({k for m in metas for k in m["params"]})
    shared, varying = {}, []
    for key in keys:
        values = [json.dumps(m["params"].get(key), sort_keys=True) for m in metas]
        if len(set(values)) == 1:
            shared[key] = metas[0]["params"][key]
        else:
            varying.append(key)
    return {
        "format_version": versions.pop(),
        "params": shared,
        "params_varying_per_shard": varying,
        "n_shards": len(metas),
        "n_rows": sum(m["num_rows"] for m in metas),
    }


def card_metadata(summary: dict, *, repo_id: str, config_sha256: str) -> dict:
    params = summary["params"]
    return {
        "pretty_name": f"Compressed teacher logits ({params.get('teacher', 'unknown teacher')})",
        "tags": ["logit-lineage", "knowledge-distillation", "compressed-logits"],
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": "train", "path": data_files_glob(summary["n_shards"])}],
        }],
        CARD_KEY: {
            "format_version": summary["format_version"],
            **({"rounding": ROUNDING_RULE} if summary["format_version"] == 3 else {}),
            "n_shards": summary["n_shards"],
            "n_rows": summary["n_rows"],
            "lineage": {
                "teacher": params.get("teacher"),
                "dataset": params.get("dataset"),
                "config_sha256": config_sha256,
            },
            "extraction": params,
            "params_varying_per_shard": summary["params_varying_per_shard"],
        },
    }


def _tokenizer_lines(params: dict, repo_id: str) -> str:
    """How a reader rebuilds the teacher's tokenizer and chat template (empty for older shards)."""
    record = params.get("teacher_tokenizer")
    if not isinstance(record, dict):
        return ""
    gguf = f", GGUF file `{record.get('gguf_file')}`" if record.get("gguf_file") else ""
    return (f"- tokenizer: from `{record.get('teacher')}` (revision `{record.get('revision')}`{gguf}, "
            f"transformers {record.get('transformers')}) with the chat template stored in "
            f"`teacher_tokenizer.chat_template`; `logit_lineage.kd.teacher_tokenizer(\"{repo_id}\")` rebuilds "
            "both and checks them against `fingerprints`\n")


def card_body(summary: dict, *, repo_id: str, config_sha256: str) -> str:
    params = summary["params"]
    rows = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in params.items())
    varying = ", ".join(f"`{k}`" for k in summary["params_varying_per_shard"]) or "none"
    return f"""# Compressed teacher logits

Teacher next-token distributions, compressed per assistant token, written by the
logit-lineage workflow (format version {summary['format_version']}).
{summary['n_rows']} rows in {summary['n_shards']} shards
(`{data_files_glob(summary['n_shards'])}`).

Per assistant token a row keeps the nucleus (top tokens up to `top_p`, at most
`top_p_max_elements`), `sampled_n` tokens drawn from the rest in proportion to their
probability with the threshold that makes unbiased importance weights possible, and
the logsumexp; logits are uint16-quantized per row, token ids are split into uint16
low bits and packed high bits. The parquet key-value metadata of every file holds
`logit_lineage.format_version` and `logit_lineage.params`; decode rows with the
workflow's reader, which refuses a format version it does not know.

## Lineage

- teacher: `{params.get('teacher')}`
- dataset: `{params.get('dataset')}`
- config sha256: `{config_sha256}` (the workflow's `seed`, `demo` and `distill` settings)
{_tokenizer_lines(params, repo_id)}
## Extraction parameters

| parameter | value |
|---|---|
{rows}

Parameters that differ between shards: {varying}.

## Loading

```python
from datasets import load_dataset
rows = load_dataset("{repo_id}", split="train")
```
"""
