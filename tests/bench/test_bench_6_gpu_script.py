"""Benchmark 6's standalone GPU script must at least run (tiny, on CPU here)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
SCRIPT = Path(__file__).with_name("gpu_extraction.py")


def test_gpu_extraction_script_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--chunk-rows", "default,256",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    data = json.loads(out.read_text())
    assert [r["chunk_rows"] for r in data["results"]] == ["default", 256]
    for r in data["results"]:
        assert r["ours_tok_s"] > 0 and r["bare_tok_s"] > 0
    assert "lm-head chunk" in proc.stdout
