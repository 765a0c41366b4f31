"""The experts chain's click scripts as a user runs them: help, a small end-to-end pass, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_script
from logit_lineage.experts.data import GeneratorSpec, class_counts, classes_info, generate
from logit_lineage.experts.data_file import write_classes, write_split
from logit_lineage.experts.logits_npz import read_npz, write_npz

SCRIPTS = (
    "make_longtail_data.py", "train_expert.py", "recompute_expert_logits.py", "import_legacy_logits.py",
    "train_gating.py", "evaluate_rejection.py", "summarize_rejection.py",
)
TINY = {"n_classes": 12, "n_max": 40, "imbalance_factor": 10, "head_threshold": 10, "feature_dim": 6,
        "modes_per_class": 2, "per_class": {"tunev": 4, "val": 6, "test": 6}}


def one_line_error(proc, *fragments):
    assert proc.returncode == 1, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def only_inputs_left(folder, expected):
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny generated data folder, written in-process (no subprocess)."""
    out = tmp_path_factory.mktemp("data")
    spec = GeneratorSpec(n_classes=12, n_max=40, imbalance_factor=10, feature_dim=6, modes_per_class=2,
                         per_class=(("tunev", 4), ("val", 6), ("test", 6)))
    for split, (x, y) in generate(spec, 3).items():
        write_split(out / f"{split}.npz", x, y)
    write_classes(out / "classes.json", classes_info(class_counts(12, 40, 10), 10, {"kind": "test"}))
    return out


@pytest.fixture(scope="module")
def logits_dir(tmp_path_factory, data_dir):
    """Random expert logits for two experts on the tiny data's splits."""
    out = tmp_path_factory.mktemp("logits")
    rng = np.random.default_rng(0)
    for expert in ("ce", "balsoftmax"):
        for split in ("tunev", "val", "test"):
            y = np.load(data_dir / f"{split}.npz")["y"]
            write_npz(out / expert / f"{split}_logits.npz", rng.standard_normal((len(y), 12)).astype(np.float32), y)
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and len(proc.stdout.splitlines()) > 8


def test_make_generated_data(tmp_path):
    proc = run_script("make_longtail_data.py", "--config", json.dumps(TINY), "--seed", "1", "--output", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "d" / "classes.json").read_text())
    assert info["class_counts"] == class_counts(12, 40, 10).tolist()
    only_inputs_left(tmp_path / "d", ["classes.json", "test.npz", "train.npz", "tunev.npz", "val.npz"])


def test_make_data_from_missing_features_names_the_file(tmp_path):
    (tmp_path / "feat").mkdir()
    cfg = {**TINY, "source": "features", "features_dir": str(tmp_path / "feat")}
    proc = run_script("make_longtail_data.py", "--config", json.dumps(cfg), "--output", str(tmp_path / "d"))
    one_line_error(proc, "train.npz", "no such file")
    assert not (tmp_path / "d").exists()


def test_unknown_expert_name(tmp_path, data_dir):
    proc = run_script("train_expert.py", "--expert", "focal", "--data-dir", str(data_dir), "--output", str(tmp_path / "x.safetensors"))
    one_line_error(proc, "unknown expert 'focal'", "experts.experts")
    assert not list(tmp_path.iterdir())


def test_train_then_recompute(tmp_path, data_dir):
    ckpt = tmp_path / "ckpt" / "logitadjust.safetensors"
    proc = run_script("train_expert.py", "--expert", "logitadjust", "--data-dir", str(data_dir),
                      "--model-config", '{"hidden": 16, "depth": 1}',
                      "--train-config", '{"epochs": 2, "batch_size": 32, "device": "cpu", "tau": 1.0}',
                      "--output", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    proc = run_script("recompute_expert_logits.py", "--checkpoint", str(ckpt), "--data-dir", str(data_dir),
                      "--device", "cpu", "--output", str(tmp_path / "logits"))
    assert proc.returncode == 0, proc.stderr
    rec = read_npz(tmp_path / "logits" / "val_logits.npz")
    assert rec.logits.shape == (72, 12)
    np.testing.assert_array_equal(rec.targets, np.load(data_dir / "val.npz")["y"])


def test_import_legacy_folder(tmp_path, data_dir):
    legacy = tmp_path / "ce_baseline"
    legacy.mkdir()
    names = {"tunev": "tuneV_logits.pt", "val": "val_lt_logits.pt", "test": "test_lt_logits.pt"}
    expected = {}
    for split, name in names.items():
        n = len(np.load(data_dir / f"{split}.npz")["y"])
        t = torch.randn(n, 12).to(torch.float16)
        torch.save(t, legacy / name)
        expected[split] = t.float().numpy()
    proc = run_script("import_legacy_logits.py", "--source-dir", str(legacy), "--data-dir", str(data_dir),
                      "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    for split in names:
        rec = read_npz(tmp_path / "out" / f"{split}_logits.npz")
        np.testing.assert_array_equal(rec.logits, expected[split])
        np.testing.assert_array_equal(rec.targets, np.load(data_dir / f"{split}.npz")["y"])


def test_import_npz_missing_targets(tmp_path, data_dir):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "tunev_logits.npz", logits=np.zeros((48, 12), np.float32), predictions=np.zeros(48, np.int64))
    proc = run_script("import_legacy_logits.py", "--source-dir", str(src), "--data-dir", str(data_dir),
                      "--splits", "tunev", "--output", str(tmp_path / "out"))
    one_line_error(proc, "tunev_logits.npz", "missing key 'targets'")
    assert not (tmp_path / "out").exists()


def _gating(logits_dir, data_dir, out, experts="ce,balsoftmax"):
    return run_script("train_gating.py", "--logits-dir", str(logits_dir), "--experts", experts, "--data-dir", str(data_dir),
                      "--config", '{"epochs": 2, "hidden": 8}', "--output", str(out))


def test_gating_writes_model_and_mixture(tmp_path, logits_dir, data_dir):
    proc = _gating(logits_dir, data_dir, tmp_path / "g")
    assert proc.returncode == 0, proc.stderr
    only_inputs_left(tmp_path / "g", ["gating.safetensors", "summary.json", "test_mixture.npz", "tunev_mixture.npz", "val_mixture.npz"])
    eta = np.exp(read_npz(tmp_path / "g" / "val_mixture.npz").logits.astype(np.float64))
    np.testing.assert_allclose(eta.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("change, fragment", [
    (lambda l, y: (l[:, :11], y % 11), "key 'logits' has 11 classes but"),
    (lambda l, y: (l[:-1], y[:-1]), "key 'logits' has N=47 rows but"),
])
def test_gating_refuses_mismatched_experts(tmp_path, logits_dir, data_dir, change, fragment):
    odd = tmp_path / "logits"
    for expert in ("ce", "balsoftmax"):
        for split in ("tunev", "val", "test"):
            rec = read_npz(logits_dir / expert / f"{split}_logits.npz")
            l, y = change(rec.logits, rec.targets) if (expert, split) == ("balsoftmax", "tunev") else (rec.logits, rec.targets)
            write_npz(odd / expert / f"{split}_logits.npz", l, y)
    proc = _gating(odd, data_dir, tmp_path / "g")
    one_line_error(proc, "balsoftmax/tunev_logits.npz", fragment, "ce/tunev_logits.npz")
    assert not (tmp_path / "g").exists()


def test_evaluate_and_summarize(tmp_path, logits_dir, data_dir):
    cfg = '{"rates": [0.0, 0.3], "mu_grid": {"min": -1, "max": 1, "steps": 5}, "worst_group": {"iters": 2}}'
    outs = []
    for expert in ("ce", "balsoftmax"):
        out = tmp_path / f"{expert}.json"
        proc = run_script("evaluate_rejection.py", "--name", expert, "--val", str(logits_dir / expert / "val_logits.npz"),
                          "--test", str(logits_dir / expert / "test_logits.npz"), "--classes", str(data_dir / "classes.json"),
                          "--config", cfg, "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        outs.append(str(out))
    proc = run_script("summarize_rejection.py", *outs, "--output-json", str(tmp_path / "m.json"),
                      "--output-tsv", str(tmp_path / "s.tsv"), "--output-png", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert [r["predictor"] for r in metrics["summary"]] == ["ce", "balsoftmax"]
    assert set(metrics["predictors"]["ce"]["methods"]) == {"chow", "plugin_balanced", "plugin_worst"}
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    bad = run_script("summarize_rejection.py", str(tmp_path / "s.tsv"), "--output-json", str(tmp_path / "m2.json"),
                     "--output-tsv", str(tmp_path / "s2.tsv"), "--output-png", str(tmp_path / "p2.png"))
    one_line_error(bad, "s.tsv", "not valid JSON")
    assert not (tmp_path / "m2.json").exists() and not (tmp_path / "p2.png").exists()


def test_evaluate_npz_missing_targets(tmp_path, data_dir):
    np.savez(tmp_path / "val_logits.npz", logits=np.zeros((72, 12), np.float32), predictions=np.zeros(72, np.int64))
    proc = run_script("evaluate_rejection.py", "--name", "ce", "--val", str(tmp_path / "val_logits.npz"),
                      "--test", str(tmp_path / "val_logits.npz"), "--classes", str(data_dir / "classes.json"),
                      "--output", str(tmp_path / "out.json"))
    one_line_error(proc, "val_logits.npz", "missing key 'targets'")
    only_inputs_left(tmp_path, ["val_logits.npz"])
