"""What the benchmarks share: options, the demo assets (built once), the results so far."""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from benchlib import Result
from workloads import DemoAssets, demo_logit_rows, demo_rows, load_demo

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

TOP_P, CAP, SAMPLED_N, SEED = 0.98, 100, 24, 1337
VOCABS = (32_000, 151_936, 262_208)


@dataclass
class BenchContext:
    repeats: int = 3  # timed rounds per comparison (after one warm-up of each side)
    teacher: str | None = None  # reuse a demo teacher dir instead of building one
    dataset: str | None = None
    shard_counts: tuple[int, ...] = (100, 1_000, 10_000)
    dryrun_repeats: int = 2
    bare_counts: tuple[int, ...] = (1_000, 10_000)  # shard counts of benchmark 5b
    dryrun_repeats_large: int = 1  # benchmark 5b's rounds at 10,000 shards and over (minutes each)
    results: list[Result] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # profiles etc., printed under the table

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    @cached_property
    def tmp(self) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix="logit-lineage-bench-")
        return Path(self._tmp.name)

    @cached_property
    def assets(self) -> DemoAssets:
        return DemoAssets.prepare(self.teacher, self.dataset, log=self.log)

    @cached_property
    def demo(self):
        """(model, tokenizer, dataset) of the demo pair, CPU float32."""
        return load_demo(self.assets)

    @cached_property
    def demo_lengths(self):
        return self.assets.lengths_table()

    def _tokenized(self, indices) -> list:
        _, tok, ds = self.demo
        return demo_rows(tok, ds, indices)

    @cached_property
    def _kept_table(self):
        lengths = self.demo_lengths
        return lengths[lengths["skip_reason"].isna()]

    def demo_logits(self, n: int):
        """n real teacher logit rows (kept positions of the first examples, in dataset order)."""
        pool = getattr(self, "_demo_pool", None)
        if pool is None or pool.shape[0] < n:
            kept = self._kept_table.sort_values("index")
            upto = int((kept["num_assistant_tokens"].cumsum() < n).sum()) + 1
            rows = self._tokenized(kept["index"].to_numpy()[:upto])
            pool = demo_logit_rows(self.demo[0], rows, n)
            self._demo_pool = pool
        return pool[:n]

    @cached_property
    def demo_shard_rows(self):
        """A length-sorted 'shard' of demo examples: every n-th of the sorted kept rows, at most 320."""
        kept = self._kept_table.sort_values(["num_tokens", "index"], kind="stable")
        step = max(1, len(kept) // 320)
        rows = self._tokenized(kept["index"].to_numpy()[::step][:320])
        return sorted(rows, key=lambda r: (len(r.ids), r.index))

    def add(self, *results: Result) -> None:
        self.results.extend(results)
