"""Writing safetensors files reproducibly.

safetensors keeps `__metadata__` in a hash map, so its keys come out in a
different order from run to run and identical content gets different bytes
(and snakemake, which compares checksums, sees a change). The header is JSON,
so sorting its keys and padding it back to the same length gives the same
bytes every time without changing what readers see.
"""
from __future__ import annotations

import json
import os
import struct

from logit_lineage.common.atomic import atomic_path


def save_sorted(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, atomically, with a canonical (sorted) header."""
    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header = header.ljust(n, b" ")  # same length: the data offsets stay valid
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(blob[:8])
            fh.write(header)
            fh.write(blob[8 + n :])
