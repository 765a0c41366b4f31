"""The student chain's click scripts as a user runs them: --help, a small run of every
method, the table, and one-line errors that leave no output behind."""
from __future__ import annotations

import csv
import json

import pytest

from conftest import plan_demo_shards, run_script
from logit_lineage.student import METHODS
from logit_lineage.student.eval_file import read_eval
from logit_lineage.student.examples_file import read_examples
from logit_lineage.student.table import TABLE_COLUMNS

SCRIPTS = ("prepare_student_data.py", "train_student.py", "tabulate_students.py")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout


@pytest.fixture(scope="module")
def shards(demo_inputs, tmp_path_factory):
    """The distillation chain's scripts on the session's demo inputs: two shards of compressed logits."""
    root = tmp_path_factory.mktemp("student_shards")
    src = plan_demo_shards(demo_inputs, root)
    logits = []
    for i in range(2):
        rows, out = root / f"rows-{i}.parquet", root / f"shard-{i:05d}.parquet"
        run_script("select_shard.py", "--plan", str(root / "plan.parquet"), "--shard", str(i), "--output", str(rows),
                   check=True)
        run_script("extract_logits.py", *src, "--shard", str(rows), "--output", str(out), "--token-budget", "1200",
                   "--threads", "1", check=True)
        logits.append(out)
    examples = root / "examples.parquet"
    proc = run_script("prepare_student_data.py", *src, *_logits_args(logits), "--heldout-every", "5",
                      "--heldout-max-examples", "20", "--output", str(examples), check=True)
    assert "held-out examples" in proc.stdout
    return {"src": src, "teacher": demo_inputs["teacher"], "logits": logits, "examples": examples, "root": root}


def _logits_args(paths):
    return [arg for p in paths for arg in ("--logits", str(p))]


def _train(shards, method, out_dir, *extra, logits=None):
    return run_script(
        "train_student.py", "--method", method, "--seed", "3", "--examples", str(shards["examples"]),
        *_logits_args(logits or shards["logits"]), "--teacher", str(shards["teacher"]), "--steps", "8",
        "--batch-size", "4", "--warmup-steps", "2", "--threads", "1", "--checkpoint", str(out_dir / "model.safetensors"),
        "--output", str(out_dir / "eval.json"), "--timings", str(out_dir / "timings.json"), *extra)


def test_examples_split(shards):
    listed, meta = read_examples(shards["examples"])
    held = [i for i, (split, _) in listed.items() if split == "heldout"]
    assert held and all(i % 5 == 0 for i in held) and len(held) <= 20
    assert meta["heldout_every"] == 5 and meta["shards"] == ["shard-00000.parquet", "shard-00001.parquet"]


def test_every_method_trains_then_tabulates(shards, tmp_path):
    evals = []
    for method in METHODS:
        out = tmp_path / method
        proc = _train(shards, method, out, "--curve-every", "3")
        assert proc.returncode == 0, proc.stderr[-3000:]
        shards_used = " on main (format 2, " if method in ("compressed", "topk") else " seed 3"
        assert proc.stdout.startswith(f"{method}{shards_used}") and "seed 3: 8 steps" in proc.stdout
        evals.append(out / "eval.json")
        assert (out / "model.safetensors").stat().st_size > 10_000
    records = [read_eval(p) for p in evals]
    # one seed: the same initial weights, the same batches, the same held-out tokens for every method
    for key in ("data_order_sha256", "init_sha256", "tokens"):
        assert len({r["training"][key] for r in records}) == 1, key
    assert len({r["heldout"]["tokens"] for r in records}) == 1
    assert records[0]["student"]["num_layers"] == 1 and records[0]["student"]["hidden_size"] == 24

    assert [r["training"]["teacher_forward_tokens"] > 0 for r in records] == [m == "dense" for m in METHODS]
    # learning curves: the shards' held-out KL estimate before training, every 3 steps and after the last
    for r in records:
        curve = r["training"]["heldout_curve"]
        assert [s for s, _ in curve] == [0, 3, 6, 8] and curve[-1][1] < curve[0][1], (r["method"], curve)
    assert len({r["training"]["heldout_curve"][0][1] for r in records}) == 1  # same start for every method

    table, summary, plot, timings = tmp_path / "t.csv", tmp_path / "s.json", tmp_path / "p.png", tmp_path / "b.csv"
    # timings match their runs by content, in any order
    timing_args = [arg for p in reversed(evals) for arg in ("--timing", str(p.with_name("timings.json")))]
    proc = run_script("tabulate_students.py", *map(str, evals), "--table", str(table), "--summary", str(summary),
                      "--plot", str(plot), "--timings", str(timings), *timing_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gap closed by compressed" in proc.stdout and "dense: training loop" in proc.stdout
    with open(timings, newline="") as fh:
        timed = list(csv.DictReader(fh))
    assert [r["method"] for r in timed] == list(METHODS)
    assert all(float(r["train_seconds"]) > 0 and float(r["steps_per_second"]) > 0 for r in timed)
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert [(r["method"], r["seed"]) for r in rows] == [(m, "3") for m in METHODS]
    for r in rows:
        assert float(r["kl_to_teacher"]) > 0 and 0 <= float(r["top1_agree"]) <= 1 and int(r["steps"]) == 8
    s = json.loads(summary.read_text())
    assert set(s["methods"]) == set(METHODS) and set(s["gap_closed"]) == {"compressed", "topk"}
    assert s["methods"]["sft"]["kl_to_teacher_std"] == 0.0  # one seed
    assert plot.stat().st_size > 10_000


def test_pruned_student_starts_from_the_teachers_layers(shards, tmp_path):
    """--init pruned: a depth-pruned copy of the teacher (2 layers → 1 kept at 0.5, width
    unchanged); two seeds start from the same weights; it is already close to the teacher
    and KD keeps it closer than a scratch student of the same depth gets. The compressed run
    with --yardstick-batches measures its sparse targets' gradients against the dense one."""
    from logit_lineage.student.model import load_student

    records = {}
    for init, seed, method, extra in (("pruned", "1", "compressed", ("--yardstick-batches", "4")),
                                      ("pruned", "2", "dense", ("--yardstick-batches", "4")),
                                      ("scratch", "1", "dense", ()), ("pruned", "3", "dense", ("--freeze-embeddings",))):
        out = tmp_path / f"{init}-{seed}"
        proc = run_script(
            "train_student.py", "--method", method, "--seed", seed, "--examples", str(shards["examples"]),
            *_logits_args(shards["logits"]), "--teacher", str(shards["teacher"]), "--steps", "8",
            "--batch-size", "4", "--warmup-steps", "2", "--threads", "1", "--init", init, *extra,
            "--checkpoint", str(out / "model.safetensors"), "--output", str(out / "eval.json"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        records[(init, seed)] = read_eval(out / "eval.json")
    pruned = records[("pruned", "1")]
    teacher_cfg = json.loads((shards["teacher"] / "config.json").read_text())
    assert pruned["student"]["init"] == "pruned" and pruned["student"]["num_layers"] == 1
    assert pruned["student"]["hidden_size"] == teacher_cfg["hidden_size"]
    assert pruned["training"]["init_sha256"] == records[("pruned", "2")]["training"]["init_sha256"]
    assert pruned["training"]["init_sha256"] != records[("scratch", "1")]["training"]["init_sha256"]
    assert pruned["heldout"]["kl_to_teacher"] < records[("scratch", "1")]["heldout"]["kl_to_teacher"]
    yard = pruned["gradient_yardstick"]  # before and after training, per sparse target
    assert set(yard) == {"init", "final"} and all(set(v) == {"unbiased", "topk"} for v in yard.values())
    assert all(v["unbiased"]["batches"] == 4 and v["unbiased"]["cosine"] > 0.9 for v in yard.values())
    assert "gradient_yardstick" not in records[("pruned", "2")]  # only compressed runs measure it
    model, meta = load_student(tmp_path / "pruned-1" / "model.safetensors")
    assert model.config.num_hidden_layers == 1 and meta["method"] == "compressed"
    # --freeze-embeddings: the teacher's embeddings and head come out as they went in
    from safetensors.torch import load_file

    teacher = load_file(shards["teacher"] / "model.safetensors")
    frozen, trained = (load_file(tmp_path / name / "model.safetensors") for name in ("pruned-3", "pruned-1"))
    frozen_rec = records[("pruned", "3")]["student"]
    assert frozen_rec["frozen_embeddings"] and frozen_rec["trained_parameters"] < frozen_rec["parameters"]
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in teacher:
            assert (frozen[key] == teacher[key]).all() and not (trained[key] == teacher[key]).all(), key


def test_bfloat16_training_is_recorded_and_changes_only_the_arithmetic(shards, tmp_path):
    """--precision bfloat16 trains under autocast: the weights come out different from the
    float32 run's (the arithmetic changed), the student is as good within bfloat16's
    rounding, and eval.json records the precision (a float32 run's has no such key)."""
    from safetensors.torch import load_file

    runs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        proc = run_script(
            "train_student.py", "--method", "dense", "--seed", "1", "--examples", str(shards["examples"]),
            *_logits_args(shards["logits"]), "--teacher", str(shards["teacher"]), "--steps", "8",
            "--batch-size", "4", "--warmup-steps", "2", "--threads", "1", "--init", "pruned",
            "--precision", precision, "--checkpoint", str(out / "model.safetensors"), "--output",
            str(out / "eval.json"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[precision] = (read_eval(out / "eval.json"), load_file(out / "model.safetensors"))
    (f32, w32), (b16, w16) = runs["float32"], runs["bfloat16"]
    assert "precision" not in f32["training"] and b16["training"]["precision"] == "bfloat16"
    assert f32["training"]["init_sha256"] == b16["training"]["init_sha256"]
    assert any(not (w32[k] == w16[k]).all() for k in w32)
    kl32, kl16 = f32["heldout"]["kl_to_teacher"], b16["heldout"]["kl_to_teacher"]
    assert abs(kl16 - kl32) <= 0.05 * kl32 + 1e-3, (kl32, kl16)


def test_errors_are_one_line_and_leave_nothing(shards, tmp_path):
    out = tmp_path / "run"
    proc = _train(shards, "compressed", out, logits=shards["logits"][:1])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert lines[-1].startswith(f"error: {shards['examples']}: ") and "in none of the shards" in lines[-1]
    assert not out.exists() or not any(out.iterdir())

    proc = _train(shards, "distill", out)
    assert proc.returncode == 2 and "'distill' is not one of" in proc.stderr

    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"format": "sortgrid-eval", "version": 1}))
    table = tmp_path / "t.csv"
    proc = run_script("tabulate_students.py", str(bogus), "--table", str(table), "--summary",
                      str(tmp_path / "s.json"), "--plot", str(tmp_path / "p.png"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {bogus}: JSON key 'format' is 'sortgrid-eval', expected 'logit-lineage-student-eval': "
        "not a student evaluation file"]
    assert not table.exists()


def test_conversations_that_do_not_match_the_shards_are_refused(shards, tmp_path):
    other = tmp_path / "other.parquet"
    run_script("make_demo_dataset.py", "--n", "160", "--seed", "8", "--output", str(other), check=True)
    out = tmp_path / "examples.parquet"
    proc = run_script("prepare_student_data.py", "--teacher", str(shards["teacher"]), "--dataset", str(other),
                      *_logits_args(shards["logits"]), "--output", str(out))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "disagree with the stored tokens" in last
    assert not out.exists()
