"""Teacher-forced evaluation of sort models on test lengths (K = 17..32 by default).

For each K, a fixed test set (seeded by the evaluation seed and K, generated on the CPU
so every device and every checkpoint sees the same sequences) is fed whole; the argmax at
each position of the sorted part is compared with the target. Exact match: all K
predictions right; token accuracy: the fraction of right predictions. The headline is
the unweighted mean of exact match over the test lengths.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.checkpoint import SortCheckpoint, read_sort_checkpoint
from logit_lineage.sortgrid.checkpoint_layout import adapt_to_target, normalize_sort_state_dict
from logit_lineage.sortgrid.data import inputs_and_targets, sample_sequences
from logit_lineage.sortgrid.model import MODEL_CONFIG_KEYS, SortGPT, SortModelConfig
from logit_lineage.sortgrid.names import CheckpointName, parse_checkpoint_name
from logit_lineage.sortgrid.tree import parse_checkpoint_path

log = logging.getLogger("logit_lineage")


def test_sequences(k: int, vocab_n: int, samples: int, *, distinct: bool, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + k)
    return sample_sequences(samples, k, vocab_n, distinct=distinct, generator=generator)


@torch.no_grad()
def evaluate_model(
    model: SortGPT,
    *,
    ks: list[int],
    samples_per_length: int,
    batch_size: int,
    distinct: bool,
    seed: int,
    device: torch.device,
) -> list[dict]:
    was_training = model.training
    model.eval()
    vocab_n = model.cfg.vocab_n
    rows = []
    for k in ks:
        seq = test_sequences(k, vocab_n, samples_per_length, distinct=distinct, seed=seed)
        exact = correct = 0
        for start in range(0, samples_per_length, batch_size):
            inputs, targets, kk = inputs_and_targets(seq[start:start + batch_size].to(device))
            hits = model(inputs, predict_from=kk).argmax(dim=-1) == targets
            exact += int(hits.all(dim=1).sum().item())
            correct += int(hits.sum().item())
        rows.append({
            "k": k,
            "exact_match": exact / samples_per_length,
            "token_accuracy": correct / (samples_per_length * k),
            "n": samples_per_length,
        })
    model.train(was_training)
    return rows


@dataclass
class LoadedSortModel:
    model: SortGPT
    checkpoint: SortCheckpoint
    layout: str
    name: CheckpointName | None


def _model_config(ckpt: SortCheckpoint, name: CheckpointName | None, path) -> SortModelConfig:
    values = {k: ckpt.config[k] for k in MODEL_CONFIG_KEYS if k in ckpt.config}
    if name is not None:
        from_name = {
            "vocab_n": name.vocab_n, "n_embd": name.n_embd, "n_heads": name.n_heads,
            "n_layers": name.n_layers, "use_mlp": name.use_mlp,
            "use_layernorm": name.use_layernorm, "without_pos": name.without_pos,
            "max_seq_len": 2 * max(name.test_max_k, name.train_max_k) + 1,
        }
        for key, value in from_name.items():
            values.setdefault(key, value)
    if "max_seq_len" not in values and "test_max_k" in ckpt.config:
        values["max_seq_len"] = 2 * int(ckpt.config["test_max_k"]) + 1
    missing = [k for k in MODEL_CONFIG_KEYS if k not in values]
    if missing:
        raise LineageError(
            f"cannot tell the model shape: config lacks {', '.join(missing)} and the file name does not parse",
            path=path,
        )
    return SortModelConfig(**values)


def load_sort_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedSortModel:
    """Load any sort checkpoint (fused or split layout) into a SortGPT."""
    ckpt = read_sort_checkpoint(path)
    try:
        name = parse_checkpoint_name(path)
    except LineageError:
        name = None
    model = SortGPT(_model_config(ckpt, name, path))
    state, layout = normalize_sort_state_dict(ckpt.model_state_dict, path)
    state = adapt_to_target(state, model.state_dict(), path)
    model.load_state_dict(state, strict=True)
    return LoadedSortModel(model.to(device), ckpt, layout, name)


def evaluate_checkpoint(
    path: str | Path,
    *,
    samples_per_length: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    test_range: tuple[int, int] | None = None,
) -> dict:
    """The evaluation record of one checkpoint file (see codec.sort_eval)."""
    loaded = load_sort_model(path, device)
    cfg = loaded.checkpoint.config
    if test_range is None:
        if loaded.name is not None:
            test_range = (loaded.name.test_min_k, loaded.name.test_max_k)
        elif "test_min_k" in cfg and "test_max_k" in cfg:
            test_range = (int(cfg["test_min_k"]), int(cfg["test_max_k"]))
        else:
            raise LineageError("no test lengths in the name or config; pass them explicitly", path=path)
    lo, hi = test_range
    if not 1 <= lo <= hi:
        raise LineageError(f"test lengths {lo}..{hi} are not a range of positive K", path=path)
    if loaded.model.wpe is not None and 2 * hi > loaded.model.cfg.max_seq_len:
        raise LineageError(f"K={hi} exceeds the positional table of this model", path=path)
    distinct = not cfg.get("allow_duplicates", False)
    if loaded.name is not None:
        distinct = loaded.name.no_duplicates
    per_k = evaluate_model(
        loaded.model, ks=list(range(lo, hi + 1)), samples_per_length=samples_per_length,
        batch_size=batch_size, distinct=distinct, seed=seed, device=device,
    )
    try:
        loc, _ = parse_checkpoint_path(path)
        run = {"layernorm": loc.use_layernorm, "regime": loc.regime, "group": loc.group,
               "task_id": loc.task_id, "seed": loc.seed}
    except LineageError:
        run = None
    name_fields = None if loaded.name is None else vars(loaded.name).copy()
    return {
        "checkpoint": str(path),
        "run": run,
        "name": name_fields,
        "iters_done": loaded.checkpoint.iters_done,
        "layout": loaded.layout,
        "eval": {"samples_per_length": samples_per_length, "seed": seed, "teacher_forced": True},
        "per_k": per_k,
        "mean_exact_match": sum(r["exact_match"] for r in per_k) / len(per_k),
        "mean_token_accuracy": sum(r["token_accuracy"] for r in per_k) / len(per_k),
    }
