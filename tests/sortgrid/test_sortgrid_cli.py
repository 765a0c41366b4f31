"""The sort-grid click scripts as a user runs them: help, a tiny run, bad input."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_script
from logit_lineage.sortgrid.checkpoint import read_sort_checkpoint, save_sort_checkpoint
from logit_lineage.sortgrid.checkpoint_layout import to_split
from logit_lineage.sortgrid.table_file import read_csv

STEM = "N16_d16_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK5to6_nodup1"
RUN = "with_layernorm/fixed/len_gen_single_k4/task_0003/seed11"


def _one_error_line(proc, *needles):
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "name, words",
    [
        ("train_sort_model.py", ["--final", "--intermediate", "--device", "it/s", "task_XXXX"]),
        ("evaluate_sort_model.py", ["--output", "exact match", "Teacher-forced"]),
        ("tabulate_sort_grid.py", ["--table", "--summary", "--plot"]),
        ("inspect_checkpoint.py", ["Format: small", "Format: medium", "--convert-to"]),
    ],
)
def test_help_explains_the_script(name, words):
    proc = run_script(name, "--help", check=True)
    text = " ".join(proc.stdout.split())
    for word in words:
        assert word in text, word


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    run_dir = root / "checkpoints" / RUN
    final = run_dir / f"Final_{STEM}_iters12.pt"
    inter = run_dir / f"Checkpoint_{STEM}_iters5.pt"
    proc = run_script(
        "train_sort_model.py", "--final", str(final), "--intermediate", str(inter),
        "--batch-size", "8", "--warmup-iters", "2", "--learning-rate", "1e-3", "--log-every", "6",
        "--device", "cpu", "--threads", "1", check=True,
    )
    return root, final, inter, proc


def test_train_writes_both_checkpoints_and_reports_iterations_per_second(trained):
    root, final, inter, proc = trained
    assert "it/s" in proc.stdout and "12 iterations" in proc.stdout
    assert "iter 6/12" in proc.stderr  # periodic log line
    assert read_sort_checkpoint(final).iters_done == 12
    assert read_sort_checkpoint(inter).iters_done == 5
    assert read_sort_checkpoint(final).config["task_id"] == 3


def test_evaluate_then_tabulate(trained, tmp_path):
    root, final, inter, _ = trained
    evals = []
    for ckpt in (inter, final):
        out = root / "eval" / RUN / (ckpt.stem + ".json")
        proc = run_script("evaluate_sort_model.py", str(ckpt), "--output", str(out),
                          "--samples-per-length", "6", "--device", "cpu", check=True)
        assert "exact match" in proc.stdout and "K=5..6" in proc.stdout
        evals.append(out)
    record = json.loads(evals[1].read_text())
    assert [r["k"] for r in record["per_k"]] == [5, 6] and record["iters_done"] == 12
    table, summary, plot = tmp_path / "t.csv", tmp_path / "s.csv", tmp_path / "p.png"
    run_script("tabulate_sort_grid.py", *map(str, evals), "--table", str(table),
               "--summary", str(summary), "--plot", str(plot), check=True)
    rows = read_csv(table)
    assert [r["prefix"] for r in rows] == ["Checkpoint", "Final"]
    assert {"exact_k5", "exact_k6", "token_k5", "token_k6"} <= set(rows[0])
    assert read_csv(summary)[0]["n_seeds"] == "1"
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_inspect_tells_small_from_medium_and_converts(trained, tmp_path):
    _, final, _, _ = trained
    proc = run_script("inspect_checkpoint.py", str(final), check=True)
    assert proc.stdout.splitlines()[0] == "Format: medium"
    ck = read_sort_checkpoint(final)
    split = tmp_path / "small.pt"
    save_sort_checkpoint(split, model_state_dict={f"_orig_mod.{k}": v for k, v in to_split(ck.model_state_dict).items()},
                         optimizer_state_dict={}, config=ck.config, iters_done=ck.iters_done)
    converted = tmp_path / "converted.pt"
    proc = run_script("inspect_checkpoint.py", str(split), "--convert-to", str(converted), check=True)
    assert proc.stdout.splitlines()[0] == "Format: small"
    assert "_orig_mod." in proc.stdout
    back = read_sort_checkpoint(converted).model_state_dict
    assert all(torch.equal(back[k], v) for k, v in ck.model_state_dict.items())


def test_bad_inputs_are_one_line_errors_and_leave_nothing(tmp_path):
    # A name that does not parse.
    bad = tmp_path / RUN / "Final_N16_d16_L1.pt"
    _one_error_line(run_script("train_sort_model.py", "--final", str(bad), "--device", "cpu"), "Final_N16_d16_L1.pt", "convention")
    # A tree that disagrees with the name (task_0002 is L1 with MLP).
    wrong = tmp_path / RUN.replace("task_0003", "task_0002") / f"Final_{STEM}_iters3.pt"
    _one_error_line(run_script("train_sort_model.py", "--final", str(wrong), "--device", "cpu"), "task_0002", str(wrong))
    assert not any(tmp_path.rglob("*.pt"))
    # An unknown layout.
    odd = tmp_path / "odd.pt"
    torch.save({"model": {"encoder.dense.weight": torch.zeros(2, 2)}}, odd)
    _one_error_line(run_script("inspect_checkpoint.py", str(odd)), "unknown checkpoint layout", "odd.pt")
    # Not a checkpoint at all; the evaluation JSON must not appear.
    junk = tmp_path / "junk.pt"
    junk.write_text("not torch")
    out = tmp_path / "junk.json"
    _one_error_line(run_script("evaluate_sort_model.py", str(junk), "--output", str(out), "--device", "cpu"), "junk.pt")
    assert not out.exists()
    # A broken evaluation file: no table, summary or plot.
    broken = tmp_path / "e.json"
    broken.write_text(json.dumps({"format": "sortgrid-eval", "version": 1, "per_k": []}))
    table = tmp_path / "t.csv"
    _one_error_line(
        run_script("tabulate_sort_grid.py", str(broken), "--table", str(table), "--summary",
                   str(tmp_path / "s.csv"), "--plot", str(tmp_path / "p.png")),
        "e.json", "missing key",
    )
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob("*.png"))
