"""The grid table: per-checkpoint rows, aggregation over seeds, eval-file checks, the plot."""
from __future__ import annotations

import pytest

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.eval_file import read_eval, write_eval
from logit_lineage.sortgrid.table import plot_grid, summary_rows, table_rows
from logit_lineage.sortgrid.table_file import SUMMARY_COLUMNS, read_csv, write_csv


def _record(seed, prefix, iters, exact, regime="fixed", task_id=3, ks=(17, 18)):
    return {
        "format": "sortgrid-eval", "version": 1, "checkpoint": f"x/{seed}/{prefix}.pt",
        "run": {"layernorm": True, "regime": regime, "group": "len_gen_single_k4", "task_id": task_id, "seed": seed},
        "name": {"prefix": prefix, "n_layers": 1, "use_mlp": False, "length_mode": "mix",
                 "train_min_k": 4, "train_max_k": 4},
        "iters_done": iters, "layout": "medium", "eval": {"samples_per_length": 10, "seed": 0},
        "per_k": [{"k": k, "exact_match": exact, "token_accuracy": 1.0, "n": 10} for k in ks],
        "mean_exact_match": exact, "mean_token_accuracy": 1.0,
    }


def test_rows_and_the_mean_and_std_over_seeds(tmp_path):
    records = [(f"r{i}", _record(seed, "Final", 40, exact)) for i, (seed, exact) in enumerate([(1337, 0.9), (2337, 0.7)])]
    records.append(("r3", _record(1337, "Checkpoint", 20, 0.1)))
    rows, ks = table_rows(records)
    assert ks == [17, 18] and [r["iters"] for r in rows] == [20, 40, 40]
    summary = {(s["prefix"], s["iters"]): s for s in summary_rows(rows)}
    final = summary[("Final", 40)]
    assert final["n_seeds"] == 2 and final["exact_match_mean"] == pytest.approx(0.8)
    assert final["exact_match_std"] == pytest.approx(0.1414, abs=1e-3)
    assert summary[("Checkpoint", 20)]["exact_match_std"] == 0.0
    write_csv(tmp_path / "s.csv", SUMMARY_COLUMNS, summary_rows(rows))
    assert read_csv(tmp_path / "s.csv")[0]["layernorm"] == "1"
    plot_grid(rows, summary_rows(rows), ks, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_files_with_other_test_lengths_or_outside_the_tree_are_refused():
    with pytest.raises(LineageError, match="test lengths"):
        table_rows([("a", _record(1, "Final", 4, 0.5)), ("b", _record(2, "Final", 4, 0.5, ks=(17,)))])
    outside = _record(1, "Final", 4, 0.5)
    outside["run"] = None
    with pytest.raises(LineageError, match="outside the grid tree"):
        table_rows([("c", outside)])


def test_eval_files_round_trip_and_bad_ones_are_named(tmp_path):
    rec = _record(1, "Final", 4, 0.5)
    rec.pop("format"), rec.pop("version")
    write_eval(tmp_path / "e.json", rec)
    assert read_eval(tmp_path / "e.json")["mean_exact_match"] == 0.5
    (tmp_path / "bad.json").write_text('{"format": "sortgrid-eval", "version": 2}')
    with pytest.raises(LineageError, match="bad.json: .*version 2"):
        read_eval(tmp_path / "bad.json")
    rec["per_k"][0]["exact_match"] = 1.5
    with pytest.raises(LineageError, match=r"per_k\[0\].exact_match"):
        write_eval(tmp_path / "f.json", rec)
    assert not (tmp_path / "f.json").exists()
