"""Sort task data, model, schedule, training, checkpoint contents and evaluation."""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.checkpoint import (
    CHECKPOINT_KEYS,
    load_torch_file,
    read_sort_checkpoint,
    save_sort_checkpoint,
)
from logit_lineage.sortgrid.checkpoint_layout import SMALL, to_split
from logit_lineage.sortgrid.data import LengthSampler, inputs_and_targets, sample_sequences
from logit_lineage.sortgrid.evaluate import evaluate_checkpoint, evaluate_model
from logit_lineage.sortgrid.model import SortGPT, SortModelConfig
from logit_lineage.sortgrid.names import parse_checkpoint_name
from logit_lineage.sortgrid.train import TrainSettings, lr_at, train_run

STEM = "N16_d16_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK5to7_nodup1"


def test_sequences_are_numbers_separator_sorted():
    seq = sample_sequences(50, 6, 20, generator=torch.Generator().manual_seed(0))
    assert seq.shape == (50, 13)
    nums, sep, out = seq[:, :6], seq[:, 6], seq[:, 7:]
    assert (sep == 20).all() and (nums < 20).all()
    assert torch.equal(out, nums.sort(dim=1).values)
    assert all(len(set(row.tolist())) == 6 for row in nums)  # distinct
    dup = sample_sequences(500, 8, 3, distinct=False, generator=torch.Generator().manual_seed(0))
    assert any(len(set(r.tolist())) < 8 for r in dup[:, :8])
    with pytest.raises(LineageError, match="distinct"):
        sample_sequences(1, 5, 4)


def test_targets_are_the_sorted_part_read_from_the_separator_on():
    seq = torch.tensor([[3, 1, 2, 9, 1, 2, 3]])
    inputs, targets, k = inputs_and_targets(seq)
    assert k == 3 and inputs.tolist() == [[3, 1, 2, 9, 1, 2]] and targets.tolist() == [[1, 2, 3]]
    assert inputs[0, k].item() == 9  # the first prediction is made at the separator


def test_length_sampling_modes():
    g = torch.Generator().manual_seed(0)
    mix = LengthSampler("mix", 2, 8, 100)
    assert {mix.sample(i, g) for i in range(300)} == set(range(2, 9))
    cur = LengthSampler("curriculum", 2, 8, 100)
    assert cur.upper(0) == 2 and cur.upper(49) < 8 and cur.upper(50) == 8 and cur.upper(99) == 8
    assert all(cur.sample(i, g) <= cur.upper(i) for i in range(100))
    fixed = LengthSampler("mix", 4, 4, 100)
    assert {fixed.sample(i, g) for i in range(20)} == {4}
    with pytest.raises(LineageError):
        LengthSampler("zigzag", 2, 4, 10)


def test_warmup_then_cosine_to_min_lr():
    s = TrainSettings(max_iters=1000, learning_rate=1e-3, min_lr=1e-5, warmup_iters=100)
    assert lr_at(0, s) == pytest.approx(1e-5)
    assert lr_at(99, s) == pytest.approx(1e-3)
    assert lr_at(550, s) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(1000, s) == pytest.approx(1e-5)
    assert all(lr_at(i, s) >= lr_at(i + 1, s) for i in range(100, 999))
    with pytest.raises(LineageError, match="outside"):
        TrainSettings(max_iters=10, checkpoint_iters=(10,))


def test_model_switches_change_the_state_dict():
    keys = lambda **kw: set(SortGPT(SortModelConfig(n_embd=8, vocab_n=5, **kw)).state_dict())  # noqa: E731
    base = keys()
    assert "blocks.0.attn.qkvo_w" in base and not any("wpe" in k or "mlp" in k for k in base)
    assert "blocks.0.mlp.fc_w" in keys(use_mlp=True)
    assert not any("ln" in k for k in keys(use_layernorm=False))
    assert "wpe.weight" in keys(without_pos=False)
    assert {k for k in keys(n_layers=2) if k.startswith("blocks.1.")}


class Oracle(nn.Module):
    """Predicts the sorted numbers perfectly (or with the last token wrong)."""

    def __init__(self, vocab_n, wrong_last=False):
        super().__init__()
        self.cfg = SortModelConfig(vocab_n=vocab_n, n_embd=4)
        self.wrong_last = wrong_last

    def forward(self, idx, predict_from=0):
        k = predict_from
        target = idx[:, :k].sort(dim=1).values
        if self.wrong_last:
            target[:, -1] = (target[:, -1] + 1) % self.cfg.vocab_n
        return nn.functional.one_hot(target, self.cfg.vocab_size).float()


def test_metrics_exact_match_and_token_accuracy():
    kw = dict(ks=[3, 5], samples_per_length=10, batch_size=4, distinct=True, seed=0, device=torch.device("cpu"))
    perfect = evaluate_model(Oracle(20), **kw)
    assert [(r["k"], r["exact_match"], r["token_accuracy"], r["n"]) for r in perfect] == [(3, 1.0, 1.0, 10), (5, 1.0, 1.0, 10)]
    off = evaluate_model(Oracle(20, wrong_last=True), **kw)
    assert [r["exact_match"] for r in off] == [0.0, 0.0]
    assert [r["token_accuracy"] for r in off] == pytest.approx([2 / 3, 4 / 5])


def _train(tmp_path, iters=40, inter=(20,), tree=True):
    run_dir = tmp_path / ("with_layernorm/fixed/len_gen_single_k4/task_0003/seed7" if tree else "")
    final = run_dir / f"Final_{STEM}_iters{iters}.pt"
    outputs = {iters: final, **{i: run_dir / f"Checkpoint_{STEM}_iters{i}.pt" for i in inter}}
    settings = TrainSettings(max_iters=iters, batch_size=32, learning_rate=3e-3, warmup_iters=5,
                             log_every=0, checkpoint_iters=tuple(inter))
    result = train_run(parse_checkpoint_name(final), settings, seed=7, device=torch.device("cpu"), outputs=outputs)
    return result, outputs


def test_training_writes_weights_only_checkpoints_with_seed_004_contents(tmp_path):
    result, outputs = _train(tmp_path)
    assert result.final_loss < math.log(17) - 0.3  # learned something from the uniform start
    for iters, path in outputs.items():
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert set(raw) == set(CHECKPOINT_KEYS)
        assert raw["iters_done"] == iters
        ck = read_sort_checkpoint(path)
        assert ck.config["n_layers"] == 1 and ck.config["use_mlp"] is False and ck.config["seed"] == 7
        assert ck.config["train_min_k"] == ck.config["train_max_k"] == 4
        assert "state" in ck.optimizer_state_dict and "param_groups" in ck.optimizer_state_dict
        assert "blocks.0.attn.qkvo_w" in ck.model_state_dict


def test_training_is_deterministic_for_a_seed(tmp_path):
    _, a = _train(tmp_path / "a", iters=6, inter=())
    _, b = _train(tmp_path / "b", iters=6, inter=())
    sa, sb = read_sort_checkpoint(a[6]).model_state_dict, read_sort_checkpoint(b[6]).model_state_dict
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_split_layout_checkpoint_evaluates_the_same(tmp_path):
    _, outputs = _train(tmp_path, iters=30, inter=())
    fused_path = outputs[30]
    ck = read_sort_checkpoint(fused_path)
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    split_path = split_dir / fused_path.name
    split_sd = {f"_orig_mod.{k}": v for k, v in to_split(ck.model_state_dict, "c_attn").items()}
    save_sort_checkpoint(split_path, model_state_dict=split_sd, optimizer_state_dict={},
                         config=ck.config, iters_done=ck.iters_done)
    kw = dict(samples_per_length=16, batch_size=8, seed=3, device=torch.device("cpu"))
    a = evaluate_checkpoint(fused_path, **kw)
    b = evaluate_checkpoint(split_path, **kw)
    assert a["layout"] == "medium" and b["layout"] == SMALL
    assert a["per_k"] == b["per_k"] and [r["k"] for r in a["per_k"]] == [5, 6, 7]
    assert a["run"] == {"layernorm": True, "regime": "fixed", "group": "len_gen_single_k4", "task_id": 3, "seed": 7}
    assert b["run"] is None  # outside the grid tree


@dataclass
class TrainConfig:  # what the original sort-grid training script pickled as `config`
    n_layers: int = 1
    use_mlp: bool = False
    test_max_k: int = 32


def test_legacy_dataclass_config_loads_as_plain_data_and_other_classes_are_refused(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"model_state_dict": {"w": torch.ones(1)}, "optimizer_state_dict": {},
                "config": TrainConfig(), "iters_done": 3}, legacy)
    ck = read_sort_checkpoint(legacy)
    assert ck.config == {"n_layers": 1, "use_mlp": False, "test_max_k": 32}
    evil = tmp_path / "evil.pt"
    torch.save({"x": Oracle(3)}, evil)
    with pytest.raises(LineageError, match="refusing to load"):
        load_torch_file(evil)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(LineageError, match="junk.pt"):
        load_torch_file(junk)


def test_reading_a_checkpoint_without_the_seed_004_keys_fails_with_one_line(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"model_state_dict": {"w": torch.ones(1)}}, path)
    with pytest.raises(LineageError) as info:
        read_sort_checkpoint(path)
    assert "missing key(s) optimizer_state_dict, config, iters_done" in str(info.value)
    with pytest.raises(LineageError, match="plain data"):
        save_sort_checkpoint(tmp_path / "x.pt", model_state_dict={}, optimizer_state_dict={},
                             config={"obj": object()}, iters_done=0)
    assert not (tmp_path / "x.pt").exists()
