"""The experts chain through real snakemake runs: the default DAG (tiny overlay), a targeted rebuild,
the legacy-import path and config errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, run_snakemake
from logit_lineage.experts.logits_npz import read_npz

pytestmark = pytest.mark.workflow
EXPERTS = ("ce", "logitadjust", "balsoftmax")
METRICS = "results/experts/eval/metrics.json"


def test_default_chain_and_single_artifact_rebuild(tmp_path, tiny_configs):
    run_snakemake(tmp_path, METRICS, "results/experts/gating/gating.safetensors", "--cores", "2", configfiles=tiny_configs)
    res = tmp_path / "results" / "experts"
    metrics = json.loads((res / "eval" / "metrics.json").read_text())
    assert [row["predictor"] for row in metrics["summary"]] == [*EXPERTS, "mixture"]
    for name, pred in metrics["predictors"].items():
        for method in ("chow", "plugin_balanced", "plugin_worst"):
            curve = pred["methods"][method]["curve"]
            assert [p["target_rate"] for p in curve] == [0.0, 0.2, 0.4]
            assert 0 <= pred["methods"][method]["aurc_balanced"] <= 1
    assert (res / "eval" / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
    assert (res / "eval" / "summary.tsv").read_text().startswith("predictor\t")
    y_test = np.load(res / "data" / "test.npz")["y"]
    for expert in EXPERTS:
        rec = read_npz(res / "logits" / expert / "test_logits.npz")
        assert rec.logits.shape == (len(y_test), 20)
        np.testing.assert_array_equal(rec.targets, y_test)
    # Rebuild one expert's npz alone by naming it: only its recompute job runs.
    target = res / "logits" / "ce" / "val_logits.npz"
    before = target.read_bytes()
    target.unlink()
    proc = run_snakemake(tmp_path, "results/experts/logits/ce/val_logits.npz", "--cores", "1", configfiles=tiny_configs)
    assert "recompute_expert_logits" in proc.stderr
    for other in ("train_expert", "make_longtail_data", "train_gating", "evaluate_rejection"):
        assert f"rule {other}" not in proc.stderr and f"\n{other} " not in proc.stderr
    assert target.read_bytes() == before  # deterministic: same checkpoint, same bytes


def _labels_only_features(root, n_classes=20):
    """A user's data folder with labels only (their logits were computed elsewhere)."""
    rng = np.random.default_rng(0)
    counts = [max(2, 40 - 2 * i) for i in range(n_classes)]
    root.mkdir(parents=True)
    np.savez(root / "train.npz", y=np.repeat(np.arange(n_classes), counts))
    for split, per in (("tunev", 4), ("val", 8), ("test", 8)):
        np.savez(root / f"{split}.npz", y=rng.permutation(np.repeat(np.arange(n_classes), per)))


def test_import_legacy_layout(tmp_path, tiny_configs):
    feats = tmp_path / "user" / "features"
    _labels_only_features(feats)
    legacy = tmp_path / "user" / "logits" / "cifar100_lt_if100"
    rng = np.random.default_rng(1)
    written = {}
    for expert, folder in (("ce", "ce_baseline"), ("balsoftmax", "balsoftmax_baseline")):
        (legacy / folder).mkdir(parents=True)
        for split, name in (("tunev", "tuneV_logits.pt"), ("val", "val_lt_logits.pt"), ("test", "test_lt_logits.pt")):
            y = np.load(feats / f"{split}.npz")["y"]
            logits = rng.standard_normal((len(y), 20)).astype(np.float32)
            logits[np.arange(len(y)), y] += 2.0
            if (expert, split) == ("balsoftmax", "test"):
                # a folder may already hold some npz: the reader takes it before the .pt
                np.savez(legacy / folder / "test_logits.npz", logits=logits, targets=y, predictions=logits.argmax(1))
                written[(expert, split)] = logits
            else:
                torch.save(torch.from_numpy(logits).to(torch.float16), legacy / folder / name)
                written[(expert, split)] = torch.from_numpy(logits).to(torch.float16).float().numpy()
    overlay = tmp_path / "import.yaml"
    overlay.write_text(yaml.safe_dump({"experts": {
        "experts": ["ce", "balsoftmax"],
        "data": {"source": "features", "features_dir": str(feats), "n_classes": 20},
        "logits": {"source": "import", "import_dir": str(legacy),
                   "import_subdirs": {"ce": "ce_baseline", "balsoftmax": "balsoftmax_baseline"}},
    }}))
    run_snakemake(tmp_path, METRICS, "--cores", "2", configfiles=[*tiny_configs, overlay])
    res = tmp_path / "results" / "experts"
    assert not (res / "checkpoints").exists()  # nothing was trained
    for (expert, split), logits in written.items():
        rec = read_npz(res / "logits" / expert / f"{split}_logits.npz")
        np.testing.assert_array_equal(rec.logits, logits)
        np.testing.assert_array_equal(rec.targets, np.load(feats / f"{split}.npz")["y"])
    metrics = json.loads((res / "eval" / "metrics.json").read_text())
    assert [row["predictor"] for row in metrics["summary"]] == ["ce", "balsoftmax", "mixture"]


@pytest.mark.parametrize("overlay, fragment", [
    ({"experts": {"experts": ["ce", "focal"]}}, "invalid config key 'experts.experts.1': 'focal' is not one of"),
    ({"experts": {"logits": {"source": "import"}}}, "config key 'experts.logits.import_dir' must name a folder"),
    ({"experts": {"logits": {"import_subdirs": {"bce": "x"}}}}, "experts.logits.import_subdirs"),
])
def test_config_errors_are_one_line(tmp_path, overlay, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = run_snakemake(tmp_path, METRICS, "-n", configfiles=[path], check=False)
    assert proc.returncode != 0
    hits = [line for line in (proc.stdout + proc.stderr).splitlines() if fragment in line]
    assert hits, proc.stderr[-3000:]


def test_lint_clean_for_experts_rules_in_both_modes(tmp_path):
    overlay = tmp_path / "import.yaml"
    overlay.write_text(yaml.safe_dump({"experts": {"logits": {"source": "import", "import_dir": str(tmp_path)}}}))
    for files in ([], [overlay]):
        proc = run_snakemake(REPO, "--lint", configfiles=files, check=False)
        experts_lints = [l for l in proc.stdout.splitlines() if "experts.smk" in l]
        assert not experts_lints, proc.stdout
