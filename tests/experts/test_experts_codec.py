"""Codec of the experts chain: expert logits npz / legacy .pt, the data splits, safetensors checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.common.errors import LineageError
from logit_lineage.experts.checkpoint import load_checkpoint, save_checkpoint
from logit_lineage.experts.data_file import read_classes, write_classes, write_split
from logit_lineage.experts.data_file import read_split as read_data_split
from logit_lineage.experts.logits_npz import (
    LEGACY_PT_NAMES,
    locate,
    read_legacy_pt,
    read_npz,
    read_split,
    stack_experts,
    write_npz,
)


def _logits(n=6, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)).astype(np.float32), rng.integers(0, c, n)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_npz_round_trip(tmp_path_factory, n, c, seed):
    logits, targets = _logits(n, c, seed)
    path = tmp_path_factory.mktemp("npz") / "val_logits.npz"
    write_npz(path, logits, targets)
    rec = read_npz(path)
    assert rec.logits.dtype == np.float32 and rec.logits.shape == (n, c)
    np.testing.assert_array_equal(rec.logits, logits)
    np.testing.assert_array_equal(rec.targets, targets)
    np.testing.assert_array_equal(rec.predictions, logits.argmax(1))
    with np.load(path) as raw:  # plain numpy keeps working for the users' own tools
        assert sorted(raw.files) == ["logits", "predictions", "targets"]


def test_npz_missing_targets_names_file_and_key(tmp_path):
    path = tmp_path / "test_logits.npz"
    logits, _ = _logits()
    np.savez(path, logits=logits, predictions=logits.argmax(1))
    with pytest.raises(LineageError, match=r"test_logits\.npz: missing key 'targets'"):
        read_npz(path)


@pytest.mark.parametrize("bad, msg", [
    (dict(targets=np.zeros(5, np.int64)), r"key 'targets' must have shape \[6\]"),
    (dict(predictions=np.zeros((6, 1), np.int64)), r"key 'predictions' must have shape \[6\]"),
    (dict(logits=np.zeros(6, np.float32)), r"key 'logits' must be \[N, C\]"),
    (dict(targets=np.full(6, 9)), r"key 'targets' has class ids outside \[0, 4\)"),
    (dict(logits=np.full((6, 4), np.nan, np.float32)), r"key 'logits' holds NaN"),
])
def test_npz_shape_and_range_checks(tmp_path, bad, msg):
    logits, targets = _logits()
    arrays = dict(logits=logits, targets=targets, predictions=logits.argmax(1))
    arrays.update(bad)
    path = tmp_path / "val_logits.npz"
    np.savez(path, **arrays)
    with pytest.raises(LineageError, match=msg):
        read_npz(path)


def test_reader_prefers_npz_over_legacy_pt(tmp_path):
    logits, targets = _logits()
    write_npz(tmp_path / "tunev_logits.npz", logits, targets)
    torch.save(torch.zeros(6, 4, dtype=torch.float16), tmp_path / "tuneV_logits.pt")
    assert locate(tmp_path, "tunev").name == "tunev_logits.npz"
    np.testing.assert_array_equal(read_split(tmp_path, "tunev").logits, logits)


@pytest.mark.parametrize("split", ["tunev", "val", "test"])
def test_legacy_names_are_found_with_labels_from_data(tmp_path, split):
    logits, targets = _logits()
    half = torch.from_numpy(logits).to(torch.float16)
    torch.save(half, tmp_path / LEGACY_PT_NAMES[split])
    assert LEGACY_PT_NAMES["tunev"] == "tuneV_logits.pt"  # capital V, as the old code wrote it
    rec = read_split(tmp_path, split, targets=targets)
    assert rec.path.name == LEGACY_PT_NAMES[split]
    np.testing.assert_array_equal(rec.logits, half.float().numpy())
    np.testing.assert_array_equal(rec.targets, targets)
    with pytest.raises(LineageError, match="carry no key 'targets'"):
        read_split(tmp_path, split)


def test_legacy_dict_with_targets_must_match_labels(tmp_path):
    logits, targets = _logits()
    torch.save({"logits": torch.from_numpy(logits), "targets": torch.from_numpy(targets)}, tmp_path / "val_lt_logits.pt")
    assert read_split(tmp_path, "val", targets=targets).n == 6
    with pytest.raises(LineageError, match="key 'targets' disagrees"):
        read_split(tmp_path, "val", targets=(targets + 1) % 4)


class _RunsCode:
    """Unpickling this calls `marker.touch()`-like code: what weights_only must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "test_lt_logits.pt"
    torch.save({"logits": torch.zeros(6, 4), "payload": _RunsCode(marker)}, path)
    with pytest.raises(LineageError, match=r"test_lt_logits\.pt: refused to load"):
        read_legacy_pt(path, targets=np.zeros(6, np.int64))
    assert not marker.exists()
    # The same file does run code under a full unpickle: the test guards something real.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_missing_split_names_both_candidates(tmp_path):
    with pytest.raises(LineageError, match=r"expected val_logits\.npz or legacy val_lt_logits\.pt"):
        read_split(tmp_path, "val")


def test_stack_experts_checks_classes_n_and_targets(tmp_path):
    a, y = _logits(6, 4, 0)
    recs = {"ce": write_npz(tmp_path / "ce.npz", a, y)}
    logits, targets = stack_experts({**recs, "balsoftmax": write_npz(tmp_path / "bs.npz", a + 1, y)})
    assert logits.shape == (6, 2, 4)
    np.testing.assert_array_equal(logits[:, 1], a + 1)
    with pytest.raises(LineageError, match=r"bs3\.npz: key 'logits' has 3 classes but .*ce\.npz has 4"):
        stack_experts({**recs, "x": write_npz(tmp_path / "bs3.npz", a[:, :3], y % 3)})
    with pytest.raises(LineageError, match=r"short\.npz: key 'logits' has N=5 rows but .*ce\.npz has N=6"):
        stack_experts({**recs, "x": write_npz(tmp_path / "short.npz", a[:5], y[:5])})
    with pytest.raises(LineageError, match=r"perm\.npz: key 'targets' differs"):
        stack_experts({**recs, "x": write_npz(tmp_path / "perm.npz", a, (y + 1) % 4)})


def test_data_split_and_classes_round_trip(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([0, 1, 2, 0, 1, 2])
    write_split(tmp_path / "val.npz", x, y)
    x2, y2 = read_data_split(tmp_path / "val.npz", n_classes=3)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    write_split(tmp_path / "labels.npz", None, y)
    with pytest.raises(LineageError, match=r"labels\.npz: missing key 'x'"):
        read_data_split(tmp_path / "labels.npz")
    assert read_data_split(tmp_path / "labels.npz", need_x=False)[0] is None
    with pytest.raises(LineageError, match=r"val\.npz: key 'y' has class ids outside \[0, 2\)"):
        read_data_split(tmp_path / "val.npz", n_classes=2)
    write_classes(tmp_path / "classes.json", {"n_classes": 3, "class_counts": [3, 2], "prior": [1, 1, 1],
                                              "head_threshold": 1, "groups": [0, 1, 1], "group_names": ["head", "tail"]})
    with pytest.raises(LineageError, match=r"classes\.json: key 'class_counts' has 2 entries"):
        read_classes(tmp_path / "classes.json")


def test_checkpoint_round_trip_and_kind_check(tmp_path):
    path = tmp_path / "ce.safetensors"
    tensors = {"0.weight": torch.randn(3, 2), "0.bias": torch.randn(3)}
    save_checkpoint(path, tensors, {"model": {"in_dim": 2}}, kind="expert")
    loaded, config = load_checkpoint(path, kind="expert")
    assert config == {"model": {"in_dim": 2}}
    torch.testing.assert_close(loaded["0.weight"], tensors["0.weight"])
    with pytest.raises(LineageError, match=r"ce\.safetensors: metadata key 'kind' is 'expert', expected 'gating'"):
        load_checkpoint(path, kind="gating")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LineageError, match=r"junk\.safetensors: not a readable safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors", kind="expert")
