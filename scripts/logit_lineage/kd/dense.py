"""Dense teacher targets computed once: the teacher's full logits read back from dense
dumps (`formats.dense_dump`, written by `dump_dense_logits.py --all-tokens`) instead of a
teacher forward at every step.

`DenseLogits(summaries)` indexes every entry of the dumps by (example index, position):
the dataset row of the conversation and the position t of the stored token whose
distribution the entry holds (computed at row t − 1, the compressed records' alignment).
`DenseLogits.rows(index, targets)` returns the float32 logits [N, V] of a batch's stored
tokens in `targets.flat()` order, the order `kd_loss` and `dense_kd_loss` take, so
`KDTrainer(teacher=DenseLogits(...), targets="teacher")` trains dense KD and evaluates the
exact held-out KL with no teacher model in memory. A stored token with no entry is refused
in one line naming the example and position.

Every seed and method then reads the same teacher numbers: dense KD costs one teacher
pass over the data, plus the dumps' bytes (4 · V bytes per token in float32, 2 · V in
float16; 98 KB per token for SmolLM2's 49,152 ids in float16).
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.dense_dump import DenseDump


class DenseLogits:
    """The entries of one or more dense dumps, looked up by (example index, position)."""

    def __init__(self, summaries: Iterable[str | os.PathLike]):
        self.dumps = [DenseDump(p) for p in summaries]
        if not self.dumps:
            raise LineageError("DenseLogits needs at least one dense dump summary")
        vocabs = {d.vocab_size for d in self.dumps}
        if len(vocabs) != 1:
            raise LineageError(f"dense dumps disagree on the vocabulary size: {sorted(vocabs)}")
        self.vocab_size = int(vocabs.pop())
        self._where: dict[tuple[int, int], tuple[int, str]] = {}
        for n, dump in enumerate(self.dumps):
            for m in dump.metadata:
                key = (int(m["example_idx"]), int(m["position"]))
                if key in self._where:
                    other = self.dumps[self._where[key][0]].summary_path
                    raise LineageError(f"example {key[0]} position {key[1]} is in two dumps ({other})",
                                       path=dump.summary_path)
                self._where[key] = (n, m["key"])
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self._where)

    def _tensor(self, n: int, key: str) -> torch.Tensor:
        fh = self._handles.get(n)
        if fh is None:  # one open file per dump, kept: safetensors maps it, reads are page-cache copies
            fh = self._handles[n] = self.dumps[n]._open().__enter__()
        return fh.get_tensor(key)

    def __getstate__(self):  # DataLoader workers and pickling: reopen the files there
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def logits(self, pairs: Iterable[tuple[int, int]]) -> torch.Tensor:
        """float32 [N, V] logits of (example index, position) pairs, in their order."""
        pairs = list(pairs)
        out = torch.empty(len(pairs), self.vocab_size, dtype=torch.float32)
        for row, (example, position) in enumerate(pairs):
            where = self._where.get((int(example), int(position)))
            if where is None:
                raise LineageError(f"the dense dumps hold no logits for example {int(example)} position "
                                   f"{int(position)} (dumped from other shards, or not with --all-tokens?)",
                                   path=self.dumps[0].summary_path.parent)
            out[row] = self._tensor(*where)
        return out

    def rows(self, index: torch.Tensor, targets) -> torch.Tensor:
        """float32 [N, V] teacher logits of a batch's stored tokens in `targets.flat()` order, on
        the targets' device. `index`: the batch's example indices [B] (the collator's "index")."""
        mask = targets.mask.cpu()
        positions = targets.positions.cpu()
        index = np.asarray(index.cpu() if torch.is_tensor(index) else index, dtype=np.int64)
        if index.shape[0] != mask.shape[0]:
            raise LineageError(f"{index.shape[0]} example indices for a batch of {mask.shape[0]}")
        b = torch.arange(mask.shape[0])[:, None].expand_as(mask)[mask].numpy()
        pos = positions[mask].numpy()
        return self.logits(zip(index[b], pos)).to(targets.positions.device)


__all__ = ["DenseLogits"]

