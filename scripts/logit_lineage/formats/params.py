"""`CompressionParams`: how a compressed-logits shard is compressed, the one object that
carries it from the config to the writer and back from a shard's metadata.

Its field names are the config keys (the `compression` definition in
workflow/schemas/defs.yaml, shared by the distill section and the entries of
student.formats) and the keys a shard's metadata holds (docs/FORMAT.md): the format
version under its own metadata key, the rest in the params JSON. The sampler
(`logit_lineage.teacher.compress.compress_rows`) names two of them as in its maths:
`cap` = top_p_max_elements, `k` = sampled_n.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from logit_lineage.common.errors import LineageError


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompressionParams:
    format_version: int
    top_p: float
    top_p_max_elements: int
    sampled_n: int

    # The keys inside the metadata's params JSON (the version has a key of its own).
    METADATA_KEYS = ("top_p", "top_p_max_elements", "sampled_n")

    def __post_init__(self):
        for name, kind in (("format_version", int), ("top_p_max_elements", int), ("sampled_n", int)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LineageError(f"compression parameter {name} must be an integer, got {value!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)):
            raise LineageError(f"compression parameter top_p must be a number, got {self.top_p!r}")

    @classmethod
    def from_config(cls, section: Mapping) -> CompressionParams:
        """From a validated config section (distill, or a student.formats entry); other keys ignored."""
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in section]
        if missing:
            raise LineageError(f"compression settings lack {missing}")
        return cls(**{f.name: section[f.name] for f in dataclasses.fields(cls)})

    @classmethod
    def from_metadata(cls, meta: Mapping) -> CompressionParams:
        """From `formats.logits.read_metadata`'s result ({"format_version", "params"})."""
        params = meta["params"]
        return cls(format_version=int(meta["format_version"]),
                   **{k: params[k] for k in cls.METADATA_KEYS})

    def metadata_params(self) -> dict:
        """The params JSON's share: top_p, top_p_max_elements, sampled_n."""
        return {k: getattr(self, k) for k in self.METADATA_KEYS}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
