"""Load several experts' logits for one split, consistently, through the codec reader."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from logit_lineage.common.errors import LineageError
from logit_lineage.experts.data_file import read_split as read_data_split
from logit_lineage.experts.logits_npz import locate, read_split, stack_experts


def load_stack(logits_dir, experts, split: str, data_dir=None, n_classes: int | None = None):
    """[N, E, C] logits and [N] targets for `split`; npz preferred, legacy .pt as fallback.

    With `data_dir`, labels come from the data split (and must match any npz targets);
    that is also what makes legacy .pt files usable.
    """
    targets = None
    if data_dir is not None:
        _, targets = read_data_split(Path(data_dir) / f"{split}.npz", n_classes=n_classes, need_x=False)
    records = {}
    for expert in experts:
        folder = Path(logits_dir) / expert
        # npz files carry their own targets: compare experts with each other first (a clearer
        # error for a wrong N or C), then with the data. Legacy .pt files need the labels.
        legacy = locate(folder, split).suffix == ".pt"
        records[expert] = read_split(folder, split, targets=targets if legacy else None)
    logits, y = stack_experts(records)
    first = records[experts[0]]
    if n_classes is not None and logits.shape[2] != n_classes:
        raise LineageError(f"key 'logits' has {logits.shape[2]} classes but classes.json key 'n_classes' is {n_classes}", path=first.path)
    if targets is not None and (y.shape != targets.shape or not np.array_equal(y, targets)):
        raise LineageError(f"key 'targets' disagrees with the labels of {Path(data_dir) / f'{split}.npz'}", path=first.path)
    return logits, y


def balanced_group_error(probs: np.ndarray, targets: np.ndarray, class_groups) -> dict:
    """Head/tail error of argmax and their mean, with no rejection."""
    class_groups = np.asarray(class_groups)
    pred = probs.argmax(axis=1)
    g = class_groups[targets]
    errs = [float((pred[g == k] != targets[g == k]).mean()) if (g == k).any() else float("nan") for k in range(int(class_groups.max()) + 1)]
    return {"group_errors": errs, "balanced_error": float(np.nanmean(errs)), "standard_error": float((pred != targets).mean())}
