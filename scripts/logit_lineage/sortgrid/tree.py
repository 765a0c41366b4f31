"""The sort-grid directory tree (the original sort-grid runs' layout): where each run's checkpoints live.

    <with_layernorm|without_layernorm>/<dynamic|fixed>/<group>/task_XXXX/seed<S>/<checkpoint name>

Groups: `len_gen_k{K}` (dynamic, LayerNorm), `len_gen_single_k{K}` (fixed, LayerNorm),
`len_gen_no_ln_k{K}` and `len_gen_single_no_ln_k{K}` (the same without LayerNorm).
Task ids follow the mapping TABLES of the original sort-grid notes (the comments in their
directory tree disagree with them and are wrong): a cross product with layers (2, 1)
outermost, then MLP (on, off), then, for dynamic groups only, the length mode (mix,
curriculum).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.names import CheckpointName, parse_checkpoint_name

REGIMES = ("dynamic", "fixed")
LAYERNORM_DIRS = {True: "with_layernorm", False: "without_layernorm"}

# (layers, MLP on, length mode) by task id; the index in the tuple IS the task id.
DYNAMIC_TASKS: tuple[tuple[int, bool, str], ...] = tuple(
    (layers, mlp, mode)
    for layers in (2, 1)
    for mlp in (True, False)
    for mode in ("mix", "curriculum")
)
# (layers, MLP on) by task id; fixed single-K runs always sample with the `mix` mode.
FIXED_TASKS: tuple[tuple[int, bool], ...] = tuple(
    (layers, mlp) for layers in (2, 1) for mlp in (True, False)
)
FIXED_LENGTH_MODE = "mix"

_GROUP_RE = re.compile(r"len_gen_(?P<single>single_)?(?P<noln>no_ln_)?k(?P<k>[1-9][0-9]*)")
_TASK_RE = re.compile(r"task_(?P<id>[0-9]{4})")
_SEED_RE = re.compile(r"seed(?P<seed>0|[1-9][0-9]*)")

# Patterns for snakemake wildcards (kept next to the formats they must match).
LAYERNORM_DIR_PATTERN = "with_layernorm|without_layernorm"
REGIME_PATTERN = "dynamic|fixed"
GROUP_PATTERN = _GROUP_RE.pattern.replace("(?P<single>", "(?:").replace(
    "(?P<noln>", "(?:").replace("(?P<k>", "(?:")
TASK_PATTERN = "[0-9]{4}"
SEED_PATTERN = "0|[1-9][0-9]*"


@dataclass(frozen=True)
class TaskSpec:
    n_layers: int
    use_mlp: bool
    length_mode: str


def group_name(regime: str, use_layernorm: bool, train_max_k: int) -> str:
    if regime not in REGIMES:
        raise LineageError(f"regime {regime!r} is not one of {', '.join(REGIMES)}")
    single = "single_" if regime == "fixed" else ""
    no_ln = "" if use_layernorm else "no_ln_"
    return f"len_gen_{single}{no_ln}k{train_max_k}"


def parse_group(name: str) -> tuple[str, bool, int]:
    """`len_gen_single_no_ln_k8` -> ("fixed", False, 8)."""
    match = _GROUP_RE.fullmatch(name)
    if match is None:
        raise LineageError(
            f"group {name!r} is not len_gen_[single_][no_ln_]k<N> (the sort grid's group names)"
        )
    regime = "fixed" if match["single"] else "dynamic"
    return regime, not match["noln"], int(match["k"])


def task_spec(regime: str, task_id: int) -> TaskSpec:
    if regime not in REGIMES:
        raise LineageError(f"regime {regime!r} is not one of {', '.join(REGIMES)}")
    table = DYNAMIC_TASKS if regime == "dynamic" else FIXED_TASKS
    if not 0 <= task_id < len(table):
        raise LineageError(
            f"task_{task_id:04d} does not exist for {regime} groups "
            f"(task_0000..task_{len(table) - 1:04d})"
        )
    if regime == "dynamic":
        layers, mlp, mode = DYNAMIC_TASKS[task_id]
        return TaskSpec(layers, mlp, mode)
    layers, mlp = FIXED_TASKS[task_id]
    return TaskSpec(layers, mlp, FIXED_LENGTH_MODE)


def task_id(regime: str, n_layers: int, use_mlp: bool, length_mode: str) -> int:
    if regime == "dynamic":
        key = (n_layers, use_mlp, length_mode)
        table = DYNAMIC_TASKS
    elif regime == "fixed":
        if length_mode != FIXED_LENGTH_MODE:
            raise LineageError(f"fixed groups use length mode {FIXED_LENGTH_MODE!r}, not {length_mode!r}")
        key = (n_layers, use_mlp)
        table = FIXED_TASKS
    else:
        raise LineageError(f"regime {regime!r} is not one of {', '.join(REGIMES)}")
    if key not in table:
        raise LineageError(
            f"no {regime} task has layers={n_layers}, mlp={use_mlp}, mode={length_mode} "
            "(the grid has 1 or 2 layers)"
        )
    return table.index(key)


@dataclass(frozen=True)
class RunLocation:
    """Where one run's checkpoints live, and what the directories say about it."""

    use_layernorm: bool
    regime: str
    train_max_k: int
    task_id: int
    seed: int

    @property
    def group(self) -> str:
        return group_name(self.regime, self.use_layernorm, self.train_max_k)

    @property
    def task(self) -> TaskSpec:
        return task_spec(self.regime, self.task_id)

    def relpath(self) -> PurePosixPath:
        return PurePosixPath(
            LAYERNORM_DIRS[self.use_layernorm], self.regime, self.group,
            f"task_{self.task_id:04d}", f"seed{self.seed}",
        )


def location_for(name: CheckpointName, regime: str, seed: int) -> RunLocation:
    """The tree location of a run, from its name's fields."""
    if regime == "fixed" and name.train_min_k != name.train_max_k:
        raise LineageError(
            f"{name.format()}: fixed runs train on one K, got trainK{name.train_min_k}to{name.train_max_k}"
        )
    tid = task_id(regime, name.n_layers, name.use_mlp, name.length_mode)
    return RunLocation(name.use_layernorm, regime, name.train_max_k, tid, seed)


def checkpoint_relpath(name: CheckpointName, regime: str, seed: int) -> PurePosixPath:
    return location_for(name, regime, seed).relpath() / name.format()


def parse_checkpoint_path(path: str | PurePath) -> tuple[RunLocation, CheckpointName]:
    """Read a checkpoint's run from its path; the tree and the name must agree.

    The last six parts must be <ln dir>/<regime>/<group>/task_XXXX/seed<S>/<name>.
    """
    path = PurePath(path)
    name = parse_checkpoint_name(path.name)
    parts = path.parts[-6:-1]
    if len(parts) != 5:
        raise LineageError(
            f"{path}: expected <with_layernorm|without_layernorm>/<dynamic|fixed>/<group>/"
            "task_XXXX/seed<S>/ above the checkpoint name"
        )
    ln_dir, regime, group, task_dir, seed_dir = parts
    where = f"{path}"
    if ln_dir not in LAYERNORM_DIRS.values():
        raise LineageError(f"directory {ln_dir!r} is not with_layernorm or without_layernorm", path=where)
    if regime not in REGIMES:
        raise LineageError(f"directory {regime!r} is not dynamic or fixed", path=where)
    group_regime, group_ln, group_k = parse_group(group)
    task_match = _TASK_RE.fullmatch(task_dir)
    seed_match = _SEED_RE.fullmatch(seed_dir)
    if task_match is None:
        raise LineageError(f"directory {task_dir!r} is not task_XXXX", path=where)
    if seed_match is None:
        raise LineageError(f"directory {seed_dir!r} is not seed<N>", path=where)
    use_ln = ln_dir == "with_layernorm"
    loc = RunLocation(use_ln, regime, group_k, int(task_match["id"]), int(seed_match["seed"]))
    spec = loc.task

    def disagree(what: str, tree: object, named: object) -> LineageError:
        return LineageError(f"the tree says {what}={tree} but the name says {named}", path=where)

    if group_regime != regime:
        raise disagree("regime", regime, f"group {group} ({group_regime})")
    if group_ln != use_ln:
        raise disagree("layernorm", ln_dir, f"group {group}")
    if name.use_layernorm != use_ln:
        raise disagree("layernorm", use_ln, f"ln{int(name.use_layernorm)}")
    if name.train_max_k != group_k:
        raise disagree("train_max_k", group_k, f"trainK..to{name.train_max_k}")
    if regime == "fixed" and name.train_min_k != group_k:
        raise disagree("train K", f"{group_k} only", f"trainK{name.train_min_k}to{name.train_max_k}")
    if (name.n_layers, name.use_mlp, name.length_mode) != (spec.n_layers, spec.use_mlp, spec.length_mode):
        raise disagree(
            f"task_{loc.task_id:04d}",
            f"L{spec.n_layers}/mlp{int(spec.use_mlp)}/{spec.length_mode}",
            f"L{name.n_layers}/mlp{int(name.use_mlp)}/{name.length_mode}",
        )
    return loc, name
