"""A generated long-tailed 100-class problem standing in for CIFAR-100-LT features.

Each class is a mixture of a few Gaussian modes in feature space. A small MLP learns the
head classes well, but a tail class with five training examples has seen at most a few of
its modes, so plain cross-entropy leans to the head and the tail is hard: the situation the
long-tail losses, the gating and the balanced rejection rule are meant for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema, fill_defaults, schema_defaults

HEAD, TAIL = 0, 1


def class_counts(n_classes: int, n_max: int, imbalance_factor: float) -> np.ndarray:
    """n_i = floor(n_max * IF^(-i/(C-1))): the CIFAR-100-LT exponential profile.

    The tiny epsilon keeps exact products (500 * 100^-1 = 5) from flooring to 4 through
    floating-point error.
    """
    if n_classes < 2:
        raise LineageError(f"n_classes must be >= 2, got {n_classes}")
    counts = [
        math.floor(n_max * imbalance_factor ** (-i / (n_classes - 1)) + 1e-9)
        for i in range(n_classes)
    ]
    if min(counts) < 1:
        raise LineageError(f"n_max={n_max} with imbalance_factor={imbalance_factor} leaves a class with no training example")
    return np.asarray(counts, dtype=np.int64)


def groups_from_counts(counts: np.ndarray, head_threshold: int) -> np.ndarray:
    """0 = head (more than `head_threshold` training examples), 1 = tail."""
    return np.where(np.asarray(counts) > head_threshold, HEAD, TAIL).astype(np.int64)


def classes_info(counts: np.ndarray, head_threshold: int, source: dict) -> dict:
    counts = np.asarray(counts, dtype=np.int64)
    groups = groups_from_counts(counts, head_threshold)
    if len(set(groups.tolist())) < 2:
        raise LineageError(
            f"head_threshold={head_threshold} puts every class in one group; head/tail metrics need both"
        )
    return {
        "n_classes": int(counts.size),
        "class_counts": counts.tolist(),
        "prior": (counts / counts.sum()).tolist(),
        "head_threshold": int(head_threshold),
        "groups": groups.tolist(),
        "group_names": ["head", "tail"],
        "n_head": int((groups == HEAD).sum()),
        "n_tail": int((groups == TAIL).sum()),
        "source": source,
    }


PER_CLASS_SPLITS = ("tunev", "val", "test")


def _per_class(counts: dict) -> tuple:
    """experts.data.per_class as ((split, n), ...) in split order."""
    return tuple((s, int(counts[s])) for s in PER_CLASS_SPLITS)


# Defaults: experts.data in workflow/schemas/experts.schema.yaml.
@dataclass(frozen=True)
@defaults_from_schema("experts", "data")
class GeneratorSpec:
    n_classes: int
    imbalance_factor: float
    n_max: int
    feature_dim: int
    modes_per_class: int
    mode_spread: float
    noise: float
    per_class: tuple = _per_class(schema_defaults("experts", "data", "per_class"))


def generate(spec: GeneratorSpec, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return {split: (x [N, D] float32, y [N] int64)} for train, tunev, val, test.

    Train follows the long-tailed counts; tunev/val/test are balanced (the same number per
    class) and disjoint draws. Deterministic in (spec, seed).
    """
    rng = np.random.default_rng(seed)
    c, d, m = spec.n_classes, spec.feature_dim, spec.modes_per_class
    # Class centres on a sphere, modes scattered around them: classes overlap a little,
    # modes make the boundary non-linear.
    centres = rng.standard_normal((c, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres *= math.sqrt(d) * 0.5
    modes = centres[:, None, :] + spec.mode_spread * rng.standard_normal((c, m, d))
    # Unequal mode weights: rare modes are what a five-example tail class never sees.
    mode_weights = rng.dirichlet(np.full(m, 1.0), size=c)

    def draw(per_class_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(c), per_class_counts)
        cdf = np.cumsum(mode_weights[y], axis=1)
        k = np.minimum((rng.random(y.size)[:, None] > cdf).sum(axis=1), m - 1)
        x = modes[y, k] + spec.noise * rng.standard_normal((y.size, d))
        order = rng.permutation(y.size)
        return x[order].astype(np.float32), y[order].astype(np.int64)

    out = {"train": draw(class_counts(c, spec.n_max, spec.imbalance_factor))}
    for split, n in spec.per_class:
        out[split] = draw(np.full(c, int(n), dtype=np.int64))
    return out


GENERATED_KEYS = ("n_classes", "imbalance_factor", "n_max", "feature_dim", "modes_per_class", "mode_spread", "noise")


def generator_spec(cfg: dict) -> GeneratorSpec:
    """GeneratorSpec from the experts.data section; keys left out take the schema's defaults."""
    cfg = fill_defaults(cfg, "experts", "data")
    return GeneratorSpec(**{k: cfg[k] for k in GENERATED_KEYS}, per_class=_per_class(cfg["per_class"]))


def build_dataset(cfg: dict, seed: int, need_x: bool = True):
    """The four splits and the classes info, generated or read from `features_dir`.

    Returns ({split: (x or None, y)}, classes_info dict).
    """
    from pathlib import Path

    from logit_lineage.experts.data_file import DATA_SPLITS, read_split

    cfg = fill_defaults(cfg, "experts", "data")  # what the workflow's validation fills in
    source = cfg["source"]
    threshold = int(cfg["head_threshold"])
    if source == "generated":
        spec = generator_spec(cfg)
        splits = generate(spec, seed)
        counts = class_counts(spec.n_classes, spec.n_max, spec.imbalance_factor)
        info = classes_info(counts, threshold, {"kind": "generated", "seed": seed, **{
            k: getattr(spec, k) for k in GENERATED_KEYS}, "per_class": dict(spec.per_class)})
        return splits, info
    if source != "features":
        raise LineageError(f"config key 'experts.data.source' is '{source}' (expected generated or features)")
    if not cfg.get("features_dir"):
        raise LineageError("config key 'experts.data.features_dir' must name a folder when experts.data.source is 'features'")
    root = Path(cfg["features_dir"])
    n_classes = int(cfg["n_classes"])
    splits = {s: read_split(root / f"{s}.npz", n_classes=n_classes, need_x=need_x) for s in DATA_SPLITS}
    dims = {s: xy[0].shape[1] for s, xy in splits.items() if xy[0] is not None}
    if len(set(dims.values())) > 1:
        first = next(iter(dims))
        other = next(s for s in dims if dims[s] != dims[first])
        raise LineageError(f"key 'x' has D={dims[other]} but {first}.npz has D={dims[first]}", path=root / f"{other}.npz")
    counts = np.bincount(splits["train"][1], minlength=n_classes)
    if (counts == 0).any():
        missing = int(np.flatnonzero(counts == 0)[0])
        raise LineageError(f"key 'y' has no training example of class {missing}; every class needs one", path=root / "train.npz")
    info = classes_info(counts, threshold, {"kind": "features", "features_dir": str(root)})
    return splits, info
