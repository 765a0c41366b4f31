"""Inputs the benchmarks run on: synthetic peaked logits, the demo teacher and its data.

- `zipf_logits`: Zipf-like rows. Row r gets an exponent s ~ U(s_lo, s_hi) and
  logit(rank i) = -s·ln(i) + N(0, jitter²), the ranks scattered over the
  vocabulary by a random permutation, shifted cyclically per row (so the token
  ids of every row look like real ones and differ from row to row).
  With the default s ∈ [1.1, 4.0] the top-1 probability spans ~0.13 … ~0.9 and
  about a fifth of the rows hit the 100-token nucleus cap at top_p 0.98, as
  flat positions of a real model do; the benchmarks print the nucleus sizes
  they saw.
- `embed_rows`: the demo teacher's real rows (its small vocabulary) placed in a
  larger vocabulary; the extra tokens take logits resampled from the row's own
  lower half, shifted so that the total mass outside the real tokens stays as
  it was. The head of the distribution is the teacher's, untouched.
- `DemoAssets`: the demo dataset and teacher, built once with the project's own
  scripts (small settings) and cached under `.bench/`, or given by the caller.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CACHE = REPO / ".bench"

# The embedded default config's demo pair (workflow/schemas/demo.schema.yaml + config/config.yaml):
# a few minutes on 2 cores, once. Fewer steps leave the teacher flat (60 steps: loss 1.3, two
# thirds of its nuclei at the 100-token cap), and fewer conversations make the length
# distribution too sparse for realistic batching; 150 steps reach loss ≈ 0.8, peaked like a real model.
DEMO_SETTINGS = {"n": 2000, "steps": 150, "batch_size": 16, "lr": 0.005, "vocab_size": 1024,
                 "hidden_size": 96, "num_layers": 2, "num_heads": 4, "max_len": 1024, "seed": 1337}


def scatter_ids(rows: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Per-row token ids for ranks 0…vocab-1: one random permutation, cyclically shifted per row."""
    perm = torch.randperm(vocab, generator=gen)
    shift = torch.randint(vocab, (rows, 1), generator=gen)
    return (perm[None, :] + shift) % vocab


def zipf_logits(rows: int, vocab: int, seed: int, *, s_lo: float = 1.1, s_hi: float = 4.0,
                jitter: float = 0.1) -> torch.Tensor:
    """Zipf-like float32 logits [rows, vocab] (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    log_rank = torch.log(torch.arange(1, vocab + 1, dtype=torch.float32))
    s = torch.empty((rows, 1), dtype=torch.float32).uniform_(s_lo, s_hi, generator=gen)
    by_rank = torch.randn((rows, vocab), generator=gen).mul_(jitter).sub_(s * log_rank[None, :])
    return torch.empty((rows, vocab), dtype=torch.float32).scatter_(1, scatter_ids(rows, vocab, gen), by_rank)


def embed_rows(real: torch.Tensor, vocab: int, seed: int) -> torch.Tensor:
    """Real rows [m, v] placed in a vocabulary of `vocab` ≥ v (see the module docstring)."""
    m, v = real.shape
    if vocab <= v:
        return real[:, :vocab].clone()
    gen = torch.Generator().manual_seed(seed)
    real = real.float()
    extra = vocab - v
    lower = torch.sort(real, dim=1).values[:, : max(1, v // 2)]
    pick = torch.randint(lower.shape[1], (m, extra), generator=gen)
    filler = lower.gather(1, pick).double()
    # Keep the extra tokens' total mass equal to the mass of the row's lower half.
    shift = torch.logsumexp(lower.double(), 1, keepdim=True) - torch.logsumexp(filler, 1, keepdim=True)
    placed = torch.cat([real, (filler + shift).float()], dim=1)
    return torch.empty((m, vocab), dtype=torch.float32).scatter_(1, scatter_ids(m, vocab, gen), placed)


def nucleus_sizes(logits: torch.Tensor, top_p: float, cap: int) -> np.ndarray:
    """Nucleus size per row (the format's rule, docs/FORMAT.md, capped) — for describing a workload."""
    lp = torch.log_softmax(logits.double(), -1)
    top = torch.topk(lp, min(cap, lp.shape[1]), dim=-1).values.exp().cumsum(-1)
    reach = top >= top_p
    return torch.where(reach.any(-1), reach.int().argmax(-1) + 1, top.shape[1]).numpy()


def rows_per_chunk(vocab: int) -> int:
    """Rows extraction hands compress_rows at once for this vocabulary.

    extract_logits.py bounds a chunk at ~4M logits (2**22 // vocab rows) but
    never splits a 64-token noise block, so long examples give whole blocks.
    """
    target = max(1, (1 << 22) // vocab)
    return max(64, target // 64 * 64)


def run_script(name: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@dataclass
class DemoAssets:
    dataset: Path
    teacher: Path
    lengths: Path | None = None

    @classmethod
    def prepare(cls, teacher: str | None = None, dataset: str | None = None, cache: Path = CACHE,
                log=print) -> "DemoAssets":
        """The given teacher/dataset, or the small demo pair built once into `cache`."""
        if teacher and dataset:
            return cls(Path(dataset), Path(teacher))
        if teacher or dataset:
            raise ValueError("give both a teacher dir and a dataset, or neither")
        key = hashlib.sha256(json.dumps(DEMO_SETTINGS, sort_keys=True).encode()).hexdigest()[:10]
        root = Path(cache) / f"demo-{key}"
        conv, teach = root / "conversations.parquet", root / "teacher"
        if not conv.exists():
            log(f"[bench] building demo dataset → {conv}")
            run_script("make_demo_dataset.py", "--n", str(DEMO_SETTINGS["n"]), "--seed",
                       str(DEMO_SETTINGS["seed"]), "--output", str(conv))
        if not (teach / "config.json").exists():
            log(f"[bench] training demo teacher ({DEMO_SETTINGS['steps']} steps) → {teach}")
            s = DEMO_SETTINGS
            run_script("build_demo_teacher.py", "--dataset", str(conv), "--output", str(teach),
                       "--vocab-size", str(s["vocab_size"]), "--hidden-size", str(s["hidden_size"]),
                       "--num-layers", str(s["num_layers"]), "--num-heads", str(s["num_heads"]),
                       "--steps", str(s["steps"]), "--batch-size", str(s["batch_size"]), "--lr", str(s["lr"]),
                       "--max-len", str(s["max_len"]), "--seed", str(s["seed"]))
        return cls(conv, teach)

    def lengths_table(self, max_seq_len: int = 1024):
        """compute_lengths.py's output for this pair (cached next to the teacher when we own it)."""
        out = self.teacher.parent / f"lengths-{self.teacher.name}-{max_seq_len}.parquet"
        if not os.access(out.parent, os.W_OK):
            out = CACHE / f"lengths-{hashlib.sha256(str(self.teacher.resolve()).encode()).hexdigest()[:10]}.parquet"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            run_script("compute_lengths.py", "--teacher", str(self.teacher), "--dataset", str(self.dataset),
                       "--max-seq-len", str(max_seq_len), "--output", str(out),
                       "--skipped", str(out.with_suffix(".skipped.tsv")))
        from logit_lineage.distill.lengths import read_lengths

        return read_lengths(out).to_pandas()


def load_demo(assets: DemoAssets):
    """(model, tokenizer, dataset) on CPU in float32, as extract_logits.py loads them."""
    from logit_lineage.teacher.data import load_conversations
    from logit_lineage.teacher.load import load_teacher, load_tokenizer

    tok = load_tokenizer(str(assets.teacher))
    model = load_teacher(str(assets.teacher), revision=None, dtype="float32", device="cpu")
    ds = load_conversations(str(assets.dataset))
    return model, tok, ds


def demo_rows(tokenizer, ds, indices) -> list:
    """teacher.data.Row objects for dataset rows `indices` (no think/eot exclusion)."""
    from logit_lineage.distill.inputs import mask_options, tokenize_row
    from logit_lineage.teacher.data import Row

    opts = mask_options(False, False, ())
    rows = []
    for i in indices:
        ids, kept = tokenize_row(tokenizer, ds, "messages", int(i), opts, "demo")
        if len(kept):
            rows.append(Row(int(i), ids, kept))
    return rows


@torch.inference_mode()
def demo_logit_rows(model, rows, limit: int) -> torch.Tensor:
    """Real float32 logits of the teacher at kept positions (the rows extraction compresses)."""
    from logit_lineage.teacher.load import decoder_hidden, head_logits

    out, n = [], 0
    for r in rows:
        ids = torch.from_numpy(r.ids)[None, :]
        hidden = decoder_hidden(model, ids, torch.ones_like(ids))[0]
        out.append(head_logits(model, hidden[torch.from_numpy(r.kept - 1)]))
        n += len(r.kept)
        if n >= limit:
            break
    return torch.cat(out)[:limit].contiguous()


def lognormal_lengths(n: int, seed: int, *, median: float = 400.0, sigma: float = 1.0,
                      lo: int = 8, hi: int = 32768) -> np.ndarray:
    """A long-tailed length distribution (log-normal, clipped), like chat/instruction data."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(math.log(median), sigma, n)), lo, hi).astype(np.int64)
