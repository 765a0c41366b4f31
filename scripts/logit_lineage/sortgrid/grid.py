"""The configured sort grid: config section -> the runs and their checkpoint paths.

No torch here: the workflow imports this module while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.names import CheckpointName
from logit_lineage.sortgrid.tree import FIXED_LENGTH_MODE, RunLocation, location_for

AXES = ("layernorm", "regimes", "train_max_k", "layers", "mlp", "length_modes", "seeds")


@dataclass(frozen=True)
class GridRun:
    location: RunLocation
    final: CheckpointName
    intermediates: tuple[CheckpointName, ...]

    @property
    def checkpoints(self) -> tuple[CheckpointName, ...]:
        return (*self.intermediates, self.final)

    def relpaths(self) -> list[PurePosixPath]:
        return [self.location.relpath() / n.format() for n in self.checkpoints]


def expand_grid(section: dict, key: str = "sortgrid") -> list[GridRun]:
    """Every run of the cross product of the grid axes, in a stable order.

    Fixed single-K groups have no length-mode axis (they always use `mix`), so the
    `length_modes` axis only multiplies dynamic runs.
    """
    grid = section.get("grid")
    if not isinstance(grid, dict):
        raise LineageError(f"config key '{key}.grid' must be a mapping of axes {', '.join(AXES)}")
    for axis in AXES:
        values = grid.get(axis)
        if not isinstance(values, list) or not values:
            raise LineageError(f"config key '{key}.grid.{axis}' is an empty axis: the grid would have no runs")
    training = section["training"]
    max_iters = int(training["max_iters"])
    inter_iters = sorted(set(int(i) for i in training.get("checkpoint_iters", [])))
    for it in inter_iters:
        if not 1 <= it < max_iters:
            raise LineageError(
                f"config key '{key}.training.checkpoint_iters': {it} is outside 1..{max_iters - 1}"
            )
    min_k = int(section["dynamic_min_k"])
    runs: dict[tuple, GridRun] = {}
    for use_ln in grid["layernorm"]:
        for regime in grid["regimes"]:
            for k in grid["train_max_k"]:
                if regime == "dynamic" and k < min_k:
                    raise LineageError(
                        f"config key '{key}.grid.train_max_k': {k} is below dynamic_min_k={min_k}"
                    )
                modes = grid["length_modes"] if regime == "dynamic" else [FIXED_LENGTH_MODE]
                for layers in grid["layers"]:
                    for mlp in grid["mlp"]:
                        for mode in modes:
                            for seed in grid["seeds"]:
                                final = CheckpointName(
                                    prefix="Final",
                                    vocab_n=int(section["vocab_n"]),
                                    n_embd=int(section["n_embd"]),
                                    n_heads=int(section["n_heads"]),
                                    n_layers=int(layers),
                                    without_pos=bool(section["without_pos"]),
                                    use_mlp=bool(mlp),
                                    use_layernorm=bool(use_ln),
                                    length_mode=mode,
                                    train_min_k=k if regime == "fixed" else min_k,
                                    train_max_k=int(k),
                                    test_min_k=int(section["test_min_k"]),
                                    test_max_k=int(section["test_max_k"]),
                                    no_duplicates=bool(section["no_duplicates"]),
                                    iters=max_iters,
                                )
                                loc = location_for(final, regime, int(seed))
                                inter = tuple(final.with_checkpoint("Checkpoint", i) for i in inter_iters)
                                sort_key = (not loc.use_layernorm, loc.regime, loc.train_max_k, loc.task_id, loc.seed)
                                runs[sort_key] = GridRun(loc, final, inter)
    return [runs[key] for key in sorted(runs)]
