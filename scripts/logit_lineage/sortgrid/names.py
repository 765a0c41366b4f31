"""Sort-grid checkpoint file names (the naming convention of the original sort-grid runs).

    {Checkpoint|Final}_N{vocab}_d{embd}_H{heads}_L{layers}_npos{0|1}_mlp{0|1}_ln{0|1}
        _len{mix|curriculum}_trainK{min}to{max}_testK{min}to{max}_nodup{0|1}_iters{step}.pt

(one line, no breaks). `npos1` means positional embeddings are *disabled*; `nodup1` means the
sampled numbers are distinct. Numbers are written without leading zeros, so parsing and
formatting are exact inverses: format(parse(name)) == name for every name that parses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePath

from logit_lineage.common.errors import LineageError

PREFIXES = ("Checkpoint", "Final")
LENGTH_MODES = ("mix", "curriculum")

_NUM = r"(?:0|[1-9][0-9]*)"
_NAME_RE = re.compile(
    rf"(?P<prefix>Checkpoint|Final)"
    rf"_N(?P<vocab_n>{_NUM})_d(?P<n_embd>{_NUM})_H(?P<n_heads>{_NUM})_L(?P<n_layers>{_NUM})"
    rf"_npos(?P<npos>[01])_mlp(?P<mlp>[01])_ln(?P<ln>[01])_len(?P<length_mode>[a-z]+)"
    rf"_trainK(?P<train_min_k>{_NUM})to(?P<train_max_k>{_NUM})"
    rf"_testK(?P<test_min_k>{_NUM})to(?P<test_max_k>{_NUM})"
    rf"_nodup(?P<nodup>[01])_iters(?P<iters>{_NUM})\.pt"
)
# The part of a name shared by every checkpoint of one run (no prefix, no iteration).
STEM_PATTERN = (
    r"N[0-9]+_d[0-9]+_H[0-9]+_L[0-9]+_npos[01]_mlp[01]_ln[01]_len[a-z]+"
    r"_trainK[0-9]+to[0-9]+_testK[0-9]+to[0-9]+_nodup[01]"
)
EXAMPLE = "Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters40000.pt"


@dataclass(frozen=True)
class CheckpointName:
    """Every field a checkpoint name carries, typed."""

    prefix: str  # "Checkpoint" (intermediate) or "Final" (end of training)
    vocab_n: int  # numbers are drawn from [0, vocab_n); the separator token is vocab_n
    n_embd: int
    n_heads: int
    n_layers: int
    without_pos: bool  # npos1
    use_mlp: bool
    use_layernorm: bool
    length_mode: str  # "mix" or "curriculum"
    train_min_k: int
    train_max_k: int
    test_min_k: int
    test_max_k: int
    no_duplicates: bool  # nodup1
    iters: int  # optimizer steps done when the file was written

    def __post_init__(self) -> None:
        problem = _field_problem(self)
        if problem:
            raise LineageError(f"invalid checkpoint name fields: {problem}")

    @property
    def stem(self) -> str:
        """The run's part of the name: no prefix, no iteration count, no suffix."""
        return (
            f"N{self.vocab_n}_d{self.n_embd}_H{self.n_heads}_L{self.n_layers}"
            f"_npos{int(self.without_pos)}_mlp{int(self.use_mlp)}_ln{int(self.use_layernorm)}"
            f"_len{self.length_mode}_trainK{self.train_min_k}to{self.train_max_k}"
            f"_testK{self.test_min_k}to{self.test_max_k}_nodup{int(self.no_duplicates)}"
        )

    def format(self) -> str:
        return f"{self.prefix}_{self.stem}_iters{self.iters}.pt"

    def with_checkpoint(self, prefix: str, iters: int) -> "CheckpointName":
        """The same run's file for another checkpoint (e.g. the intermediate one)."""
        return replace(self, prefix=prefix, iters=iters)


def _field_problem(n: CheckpointName) -> str | None:
    if n.prefix not in PREFIXES:
        return f"prefix {n.prefix!r} is not one of {', '.join(PREFIXES)}"
    if n.length_mode not in LENGTH_MODES:
        return f"length mode {n.length_mode!r} is not one of {', '.join(LENGTH_MODES)}"
    for field in ("vocab_n", "n_embd", "n_heads", "n_layers", "train_min_k", "test_min_k"):
        value = getattr(n, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{field} must be a positive integer, got {value!r}"
    if isinstance(n.iters, bool) or not isinstance(n.iters, int) or n.iters < 0:
        return f"iters must be a non-negative integer, got {n.iters!r}"
    if n.n_embd % n.n_heads:
        return f"d{n.n_embd} is not divisible by H{n.n_heads}"
    if not n.train_min_k <= n.train_max_k:
        return f"trainK{n.train_min_k}to{n.train_max_k} has min > max"
    if not n.test_min_k <= n.test_max_k:
        return f"testK{n.test_min_k}to{n.test_max_k} has min > max"
    if n.no_duplicates and max(n.train_max_k, n.test_max_k) > n.vocab_n:
        return (
            f"cannot draw {max(n.train_max_k, n.test_max_k)} distinct numbers from "
            f"N{n.vocab_n}"
        )
    return None


def parse_checkpoint_name(name: str | PurePath) -> CheckpointName:
    """Parse a checkpoint file name (a path is fine: only its last part is read)."""
    base = PurePath(name).name
    match = _NAME_RE.fullmatch(base)
    if match is None:
        raise LineageError(
            f"checkpoint name {base!r} does not follow the convention, e.g. {EXAMPLE}"
        )
    g = match.groupdict()
    try:
        return CheckpointName(
            prefix=g["prefix"],
            vocab_n=int(g["vocab_n"]),
            n_embd=int(g["n_embd"]),
            n_heads=int(g["n_heads"]),
            n_layers=int(g["n_layers"]),
            without_pos=g["npos"] == "1",
            use_mlp=g["mlp"] == "1",
            use_layernorm=g["ln"] == "1",
            length_mode=g["length_mode"],
            train_min_k=int(g["train_min_k"]),
            train_max_k=int(g["train_max_k"]),
            test_min_k=int(g["test_min_k"]),
            test_max_k=int(g["test_max_k"]),
            no_duplicates=g["nodup"] == "1",
            iters=int(g["iters"]),
        )
    except LineageError as exc:
        raise LineageError(f"checkpoint name {base!r}: {exc}") from None


def format_checkpoint_name(name: CheckpointName) -> str:
    return name.format()
