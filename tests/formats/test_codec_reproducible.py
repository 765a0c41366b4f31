"""Same content, same bytes: writers whose libraries are not deterministic by default.

Snakemake compares checksums to decide reruns, and the SLURM test compares a
cluster run with a local one, so identical content must give identical files.
"""
from __future__ import annotations

import torch
from safetensors import safe_open

from logit_lineage.experts.checkpoint import load_checkpoint, save_checkpoint
from logit_lineage.formats.dense_dump import DenseDump, DenseEntry, write_dense_dump
from logit_lineage.formats.safetensors_file import save_sorted
from logit_lineage.sortgrid.checkpoint import save_sort_checkpoint


def test_safetensors_header_is_canonical(tmp_path):
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    meta = {f"key{i}": str(i) for i in range(20)}
    paths = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for p in paths:
        save_sorted(tensors, p, metadata=dict(reversed(list(meta.items()))) if p.stem == "1" else meta)
    assert len({p.read_bytes() for p in paths}) == 1
    with safe_open(str(paths[0]), framework="pt") as fh:
        assert fh.metadata() == meta
        assert torch.equal(fh.get_tensor("b"), tensors["b"])


def test_expert_checkpoint_bytes_repeat(tmp_path):
    tensors = {"w": torch.randn(3, 3, generator=torch.Generator().manual_seed(0))}
    for name in ("x", "y"):
        save_checkpoint(tmp_path / f"{name}.safetensors", tensors, {"hidden": 8, "lr": 0.1}, "expert")
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()
    assert load_checkpoint(tmp_path / "x.safetensors", "expert")[1] == {"hidden": 8, "lr": 0.1}


def test_dense_dump_bytes_repeat(tmp_path):
    for name in ("x", "y"):
        entries = [DenseEntry(sample_idx=0, example_idx=5, position=p, logits=torch.full((7,), float(p)),
                              fields={"token_id": p}) for p in (1, 2)]
        write_dense_dump(tmp_path / name / "dump.json.gz", entries, dtype="float32")
    for f in ("dump.json.gz", "dump.safetensors", "dump.metadata.json"):
        assert (tmp_path / "x" / f).read_bytes() == (tmp_path / "y" / f).read_bytes(), f
    assert len(DenseDump(tmp_path / "x" / "dump.json.gz").metadata) == 2


def test_sort_checkpoint_bytes_repeat(tmp_path):
    state = {"w": torch.ones(2, 2)}
    for name in ("x", "y"):
        save_sort_checkpoint(tmp_path / f"{name}.pt", model_state_dict=state, optimizer_state_dict={},
                             config={"n_layers": 1}, iters_done=10)
    assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "y.pt").read_bytes()
