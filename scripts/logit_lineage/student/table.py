"""The student table, its summary, its plot and the training jobs' timings.

`student_table.csv`: one row per run (method, format, seed), columns TABLE_COLUMNS, methods in
METHODS order, main (the distillation chain's shards) before the student.formats variants (by bytes per
token, largest first), then ascending seed; floats with 6 decimals. `bytes_per_token` (file
bytes over stored tokens of the shards the run learnt from) is set for SHARD_METHODS. Like
every result, it depends on the runs' inputs alone (no wall times), so a rerun or a SLURM
run gives the same bytes.

`student_timings.csv` (under the benchmarks root, beside what snakemake measures): one row
per run, TIMING_COLUMNS, from the run's timings JSON (train_student.py --timings): wall
seconds of the training loop, of the held-out evaluation and of loading (shards, examples,
teacher), and the training steps per second.

`student_summary.json`:
    {"format": "logit-lineage-student-summary", "format_version": 1,
     "methods": {method: {"n_seeds", "seeds", "<metric>_mean", "<metric>_std" for kl_to_teacher,
                          ce, top1_agree}},
     "gap_closed": {method: (KL_sft − KL_method) / (KL_sft − KL_dense) from the seed means,
                    for every method but sft and dense; null without both baselines},
     "gap_closed_per_seed": {method: {"mean", "std", "values"}}   (the same ratio seed by seed),
     "formats": {format: {"bytes_per_token", "format_version", "top_p", "top_p_max_elements",
                          "sampled_n", "<metric>_mean", "<metric>_std", "kl_delta_vs_main":
                          {"mean", "std", "values"} (paired by seed), "within_main_spread"}}
                (method compressed on main, the distillation chain's shards, and on each student.formats variant),
     "versus_dense": {group: {"mean", "se", "z", "values", "seeds", "n_seeds", "note", "gap_closed",
                              "bytes_per_token", "ce_delta": {"mean", "se"},
                              "top1_delta": {"mean", "se"},
                              "kl_split_delta": {"beyond_nucleus": {"mean", "se"},
                                                 "within_nucleus": {"mean", "se"}}   (optional)}},
     "goal": {"gap_closed_min": 0.95, "power_z": 3.0, "compressed_gap_closed",
              "power": {"sft", "topk", "met"},
              "close": {group: {"gap_closed", "z", "closes_gap", "indistinguishable", "met"}},
              "met"},
     "heldout": {"examples", "tokens"}, "teacher": {"ce", "entropy"}}
std is the sample standard deviation over seeds (0 with one seed).

`versus_dense`: every run group but dense on main, a group being a method on main (keyed by
the method: "compressed", "topk", "sft") or a method on a format variant ("compressed/<F>"),
against dense on main, paired by seed (the seeds both ran; a group without one is left out).
`values`: per seed, the group's KL to the teacher minus dense's (positive: further from the
teacher than dense); `mean` their mean, `se` their sample std / sqrt(n_seeds), the paired
standard error (null with one seed), `z` = mean / se. With se 0, z is null (JSON has no
infinity) and `note` says which: every difference 0 (identical to dense: |z| counts as 0) or
one nonzero difference on every seed (|z| counts as infinite); otherwise `note` is null.
`kl_split_delta` (where the runs' eval.json split the KL at the same nucleus): the same paired
difference beyond the teacher's nucleus and within it (the two add up to `mean`).
`gap_closed`: (KL_sft − KL_group) / (KL_sft − KL_dense) from the seed means of main's sft and
dense and the group's own runs (null without both baselines); `bytes_per_token` as in the
table; `ce_delta`, `top1_delta`: the same paired mean and standard error for CE and top-1
agreement.

`goal`: can the benchmark tell the targets apart, and is the compressed one as good as the
dense teacher at that resolution? `power`: sft and topk each differ from dense by more than
POWER_Z paired standard errors (|z| > POWER_Z), per method, and `met` for both (null when
dense or the method is missing or has one seed). `close`: for compressed on main and on every
format variant, `closes_gap` (gap_closed ≥ GAP_CLOSED_MIN) and `indistinguishable` (|z| ≤
POWER_Z: no difference from dense that this many seeds would show), `met` for both.
The goal's `met`: power met and every close group met; null when something it needs is
missing. `compressed_gap_closed` repeats gap_closed["compressed"].
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from logit_lineage.common.atomic import atomic_path, write_json
from logit_lineage.common.errors import LineageError
from logit_lineage.student import METHODS, SHARD_METHODS

TABLE_COLUMNS = (
    "method", "format", "seed", "bytes_per_token", "kl_to_teacher", "ce", "top1_agree", "steps", "tokens",
    "teacher_forward_tokens",
    "final_train_loss", "heldout_tokens", "teacher_ce", "parameters", "checkpoint",
)
TIMING_COLUMNS = ("method", "format", "seed", "train_seconds", "steps_per_second", "eval_seconds", "load_seconds",
                  "device")
SUMMARY_METRICS = ("kl_to_teacher", "ce", "top1_agree")
SUMMARY_FORMAT = "logit-lineage-student-summary"
GAP_CLOSED_MIN = 0.95  # of the sft → dense gap that compressed must close
POWER_Z = 3.0  # paired standard errors that tell two targets apart
MAIN = "main"  # the distillation chain's shards; other formats are student.formats' variants


def group_key(method: str, fmt: str) -> str:
    """A run group's name: the method on main, `method/format` on a format variant."""
    return method if fmt == MAIN else f"{method}/{fmt}"


def _row_order(r: dict) -> tuple:
    """The table's order: METHODS, main first, then formats by bytes per token (largest first), seed."""
    return METHODS.index(r["method"]), r["format"] != MAIN, -(r["bytes_per_token"] or 0.0), r["format"], r["seed"]


def table_rows(records: list[tuple[str, dict]]) -> list[dict]:
    rows, seen, held = [], {}, None
    for path, rec in records:
        shards = rec.get("shards") or {}
        fmt = shards.get("label", MAIN)
        key = (rec["method"], fmt, int(rec["seed"]))
        if key in seen:
            raise LineageError(f"method {key[0]} format {fmt} seed {key[2]} is also in {seen[key]}", path=path)
        seen[key] = path
        h, t = rec["heldout"], rec["training"]
        this_held = (int(h["examples"]), int(h["tokens"]))
        if held is None:
            held = (this_held, path)
        elif this_held != held[0]:
            raise LineageError(f"held-out set of {this_held[0]} examples / {this_held[1]} tokens differs from "
                               f"{held[1]}'s {held[0][0]} / {held[0][1]}", path=path)
        bpt = shards.get("bytes_per_token") if rec["method"] in SHARD_METHODS else None
        rows.append({
            "method": rec["method"], "format": fmt, "seed": int(rec["seed"]),
            "bytes_per_token": None if bpt is None else float(bpt),
            "format_version": shards.get("format_version"),
            "compression": {k: shards.get(k) for k in ("top_p", "top_p_max_elements", "sampled_n")},
            "kl_to_teacher": float(h["kl_to_teacher"]), "ce": float(h["ce"]), "top1_agree": float(h["top1_agree"]),
            "steps": int(t["steps"]), "tokens": int(t["tokens"]),
            "teacher_forward_tokens": int(t["teacher_forward_tokens"]),
            "final_train_loss": float(t["final_loss"]), "heldout_tokens": int(h["tokens"]),
            "teacher_ce": float(h["teacher_ce"]), "teacher_entropy": float(h["teacher_entropy"]),
            "heldout_examples": int(h["examples"]),
            "parameters": int(rec["student"].get("parameters", 0)), "checkpoint": rec["checkpoint"],
            "data_order_sha256": t["data_order_sha256"], "init_sha256": t["init_sha256"],
            "heldout_curve": [(int(a), float(b)) for a, b in t.get("heldout_curve") or []],
            "gradient_yardstick": rec.get("gradient_yardstick"),
            "kl_beyond_nucleus": h.get("kl_beyond_nucleus"), "nucleus": h.get("nucleus"),
        })
    if not rows:
        raise LineageError("no evaluation files to tabulate")
    _check_pairing(rows)
    rows.sort(key=_row_order)
    return rows


def _check_pairing(rows: list[dict]) -> None:
    """Every method of a seed must have started from the same weights and seen the same batches."""
    by_seed = defaultdict(list)
    for r in rows:
        by_seed[r["seed"]].append(r)
    for seed, members in by_seed.items():
        for key in ("data_order_sha256", "init_sha256", "steps"):
            values = {m[key] for m in members}
            if len(values) > 1:
                which = ", ".join(f"{m['method']}/{m['format']}={str(m[key])[:12]}" for m in members)
                raise LineageError(f"seed {seed}: runs differ in {key} ({which}): not a paired comparison")


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _gap(kl: dict[str, float], method: str) -> float | None:
    if not {"sft", "dense", method} <= kl.keys():
        return None
    span = kl["sft"] - kl["dense"]
    return (kl["sft"] - kl[method]) / span if span != 0 else None


def _stats(members: list[dict]) -> dict[str, Any]:
    entry = {"n_seeds": len(members), "seeds": [m["seed"] for m in members]}
    for metric in SUMMARY_METRICS:
        values = [m[metric] for m in members]
        entry[f"{metric}_mean"] = statistics.fmean(values)
        entry[f"{metric}_std"] = _std(values)
    return entry


def _formats(rows: list[dict]) -> dict[str, Any]:
    """Every format the compressed method trained on (main first), for the bytes-vs-KL table:
    bytes per token, KL mean ± std over seeds, and the paired KL difference to main's run of
    the same seed; `within_main_spread`: mean KL ≤ main's mean + main's seed-to-seed std."""
    runs = defaultdict(list)
    for r in rows:
        if r["method"] == "compressed":
            runs[r["format"]].append(r)
    if not runs:
        return {}
    main = {r["seed"]: r["kl_to_teacher"] for r in runs.get(MAIN, [])}
    main_stats = _stats(runs[MAIN]) if MAIN in runs else None
    out = {}
    for fmt in sorted(runs, key=lambda f: (f != MAIN, -(runs[f][0]["bytes_per_token"] or 0.0), f)):
        members = runs[fmt]
        entry = {"bytes_per_token": members[0]["bytes_per_token"], "format_version": members[0]["format_version"],
                 **members[0]["compression"], **_stats(members)}
        deltas = [m["kl_to_teacher"] - main[m["seed"]] for m in members if m["seed"] in main]
        entry["kl_delta_vs_main"] = ({"mean": statistics.fmean(deltas), "std": _std(deltas), "values": deltas}
                                     if deltas and fmt != MAIN else None)
        entry["within_main_spread"] = (None if main_stats is None or fmt == MAIN else bool(
            entry["kl_to_teacher_mean"] <= main_stats["kl_to_teacher_mean"] + main_stats["kl_to_teacher_std"]))
        out[fmt] = entry
    return out


def _paired(diffs: list[float]) -> dict[str, float | None]:
    """Mean of per-seed differences and its paired standard error, sample std / sqrt(n)
    (None with one seed)."""
    n = len(diffs)
    return {"mean": statistics.fmean(diffs), "se": statistics.stdev(diffs) / math.sqrt(n) if n > 1 else None}


def _z(mean: float, se: float | None) -> tuple[float | None, str | None]:
    """z = mean / se and a note where it is null (JSON has no infinity)."""
    if se is None:
        return None, "one seed: no standard error"
    if se > 0:
        return mean / se, None
    if mean == 0:
        return None, "identical to dense on every seed (se 0): |z| counts as 0"
    return None, "the same nonzero difference on every seed (se 0): |z| counts as infinite"


def abs_z(entry: dict | None) -> float | None:
    """|z| of a versus_dense entry, se 0 read as its note says (0 or infinity); None without
    the entry or with one seed."""
    if entry is None or entry["se"] is None:
        return None
    if entry["z"] is not None:
        return abs(entry["z"])
    return 0.0 if entry["mean"] == 0 else math.inf


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Every run group but dense on main, in the table's order, with its runs."""
    groups = defaultdict(list)
    for r in sorted(rows, key=_row_order):
        if (r["method"], r["format"]) != ("dense", MAIN):
            groups[group_key(r["method"], r["format"])].append(r)
    return groups


def _versus_dense(groups: dict[str, list[dict]], rows: list[dict], kl: dict[str, float]) -> dict[str, Any]:
    """Each group against dense on main, seed by seed; `kl`: main's KL seed means per method."""
    dense = {r["seed"]: r for r in rows if (r["method"], r["format"]) == ("dense", MAIN)}
    out = {}
    for key, members in groups.items():
        paired = [m for m in members if m["seed"] in dense]
        if not paired:
            continue
        delta = {metric: [m[metric] - dense[m["seed"]][metric] for m in paired] for metric in SUMMARY_METRICS}
        entry = _paired(delta["kl_to_teacher"])
        entry["z"], entry["note"] = _z(entry["mean"], entry["se"])
        own = statistics.fmean(m["kl_to_teacher"] for m in members)
        out[key] = {**entry, "values": delta["kl_to_teacher"], "seeds": [m["seed"] for m in paired],
                    "n_seeds": len(paired), "gap_closed": _gap({**kl, key: own}, key),
                    "bytes_per_token": members[0]["bytes_per_token"],
                    "ce_delta": _paired(delta["ce"]), "top1_delta": _paired(delta["top1_agree"])}
        split = _split_delta(paired, dense)
        if split is not None:
            out[key]["kl_split_delta"] = split
    return out


def _split_delta(paired: list[dict], dense: dict[int, dict]) -> dict[str, Any] | None:
    """The paired KL difference split at the teacher's nucleus (beyond it: where renormalised
    top-k targets put nothing), where every run of the pair measured it at the same nucleus."""
    pairs = [(m, dense[m["seed"]]) for m in paired]
    if not all(m["kl_beyond_nucleus"] is not None and m["nucleus"] is not None and m["nucleus"] == d["nucleus"]
               and d["kl_beyond_nucleus"] is not None for m, d in pairs):
        return None
    beyond = [m["kl_beyond_nucleus"] - d["kl_beyond_nucleus"] for m, d in pairs]
    within = [(m["kl_to_teacher"] - m["kl_beyond_nucleus"]) - (d["kl_to_teacher"] - d["kl_beyond_nucleus"])
              for m, d in pairs]
    return {"beyond_nucleus": _paired(beyond), "within_nucleus": _paired(within)}


def _all(values) -> bool | None:
    """True when every value is, None when any is unknown."""
    values = list(values)
    return None if any(v is None for v in values) else all(values)


def _close(entry: dict | None) -> dict[str, Any]:
    """A compressed group against dense: closes the gap and no difference that the seeds show."""
    gap = None if entry is None else entry["gap_closed"]
    z = abs_z(entry)
    closes = None if gap is None else gap >= GAP_CLOSED_MIN
    indistinguishable = None if z is None else z <= POWER_Z
    return {"gap_closed": gap, "z": None if entry is None else entry["z"], "closes_gap": closes,
            "indistinguishable": indistinguishable, "met": _all([closes, indistinguishable])}


def _goal(groups: dict[str, list[dict]], versus: dict[str, Any], gap: dict[str, float | None]) -> dict[str, Any]:
    """The power to tell sft and topk from dense, and compressed (main and every format
    variant) as close to dense as that power can see."""
    power = {}
    for method in ("sft", "topk"):
        z = abs_z(versus.get(method))
        power[method] = None if z is None else z > POWER_Z
    power["met"] = _all(power.values())
    close_groups = ["compressed", *(k for k in groups if k.startswith("compressed/"))]
    close = {key: _close(versus.get(key)) for key in close_groups}
    return {
        "gap_closed_min": GAP_CLOSED_MIN,
        "power_z": POWER_Z,
        "compressed_gap_closed": gap.get("compressed"),
        "power": power,
        "close": close,
        "met": _all([power["met"], *(c["met"] for c in close.values())]),
    }


def summarize(rows: list[dict]) -> dict[str, Any]:
    by_method = defaultdict(list)
    for r in rows:
        if r["format"] == MAIN:
            by_method[r["method"]].append(r)
    methods = {}
    for method in (m for m in METHODS if m in by_method):
        methods[method] = _stats(by_method[method])
    kl = {m: e["kl_to_teacher_mean"] for m, e in methods.items()}
    others = [m for m in methods if m not in ("sft", "dense")]
    gap = {m: _gap(kl, m) for m in others}
    per_seed = {}
    seeds = sorted({r["seed"] for r in rows})
    for m in others:
        values = []
        for s in seeds:
            seed_kl = {r["method"]: r["kl_to_teacher"] for r in rows if r["seed"] == s and r["format"] == MAIN}
            g = _gap(seed_kl, m)
            if g is not None:
                values.append(g)
        per_seed[m] = ({"mean": statistics.fmean(values), "std": _std(values), "values": values}
                       if values else None)
    groups = _groups(rows)
    versus = _versus_dense(groups, rows, kl)
    return {
        "format": SUMMARY_FORMAT,
        "format_version": 1,
        "methods": methods,
        "gap_closed": gap,
        "gap_closed_per_seed": per_seed,
        "formats": _formats(rows),
        "versus_dense": versus,
        "goal": _goal(groups, versus, gap),
        "gradient_yardstick": {f"{r['method']}/{r['format']}/seed-{r['seed']}": r["gradient_yardstick"]
                               for r in rows if r.get("gradient_yardstick")},
        "heldout": {"examples": rows[0]["heldout_examples"], "tokens": rows[0]["heldout_tokens"]},
        "teacher": {"ce": rows[0]["teacher_ce"], "entropy": rows[0]["teacher_entropy"]},
    }


def summary_lines(summary: dict) -> list[str]:
    """The summary as text: one line per method, then the gap closed and the goal."""
    lines = []
    for method, e in summary["methods"].items():
        lines.append(f"{method:>10}: KL to teacher {e['kl_to_teacher_mean']:.4f} ± {e['kl_to_teacher_std']:.4f}, "
                     f"CE {e['ce_mean']:.4f} ± {e['ce_std']:.4f}, top-1 agreement {e['top1_agree_mean']:.3f} "
                     f"± {e['top1_agree_std']:.3f} ({e['n_seeds']} seeds)")
    for method, g in summary["gap_closed"].items():
        if g is not None:
            lines.append(f"gap closed by {method}: {100 * g:.1f} % of (KL_sft − KL_dense)")
    for fmt, e in summary.get("formats", {}).items():
        delta = e["kl_delta_vs_main"]
        size = "?" if e["bytes_per_token"] is None else f"{e['bytes_per_token']:.1f}"
        lines.append(f"compressed on {fmt} (format {e['format_version']}, {size} B/token): "
                     f"KL {e['kl_to_teacher_mean']:.4f} ± {e['kl_to_teacher_std']:.4f}"
                     + ("" if delta is None else f", paired Δ vs main {delta['mean']:+.4f} ± {delta['std']:.4f}, "
                        f"{'within' if e['within_main_spread'] else 'OUTSIDE'} main's seed spread"))
    for key, e in summary.get("versus_dense", {}).items():
        lines.append(_versus_line(key, e))
    lines += _goal_lines(summary["goal"])
    return lines


def _verdict(value: bool | None) -> str:
    return "undecided" if value is None else "met" if value else "NOT met"


def _z_text(e: dict) -> str:
    if e["z"] is not None:
        return f"{e['z']:+.3g}"
    if e["se"] is None:
        return "n/a (one seed)"
    return "0 (identical on every seed)" if e["mean"] == 0 else f"{'+' if e['mean'] > 0 else '−'}∞ (se 0)"


def _versus_line(key: str, e: dict) -> str:
    """One group against dense: the paired KL difference ± its standard error, z, gap closed, size."""
    se = "?" if e["se"] is None else f"{e['se']:.4f}"
    gap = "" if e["gap_closed"] is None else f", gap closed {100 * e['gap_closed']:.1f} %"
    size = "" if e["bytes_per_token"] is None else f", {e['bytes_per_token']:.1f} B/token"
    split = e.get("kl_split_delta")
    where = "" if split is None else "; " + ", ".join(
        f"{part.replace('_', ' ')} {d['mean']:+.4f} ± {'?' if d['se'] is None else format(d['se'], '.4f')}"
        for part, d in split.items())
    return (f"{key} vs dense: Δ KL {e['mean']:+.4f} ± {se} (paired SE, {e['n_seeds']} seeds), "
            f"z {_z_text(e)}{gap}{size}{where}")


def _goal_lines(goal: dict) -> list[str]:
    """The goal: power per method, close per compressed group, overall."""
    z, gap_min = goal["power_z"], 100 * goal["gap_closed_min"]
    power = goal["power"]
    lines = [f"power (differs from dense by > {z:g} paired SE): "
             + ", ".join(f"{m} {_verdict(power[m])}" for m in power if m != "met") + f"; {_verdict(power['met'])}"]
    for key, c in goal["close"].items():
        gap = "?" if c["gap_closed"] is None else f"{100 * c['gap_closed']:.1f} %"
        lines.append(f"close: {key} closes ≥ {gap_min:.0f} % of the gap ({gap}) and is within {z:g} paired SE "
                     f"of dense: {_verdict(c['met'])}")
    lines.append(f"goal (power, and every compressed group close): {_verdict(goal['met'])}")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else str(value)


def read_timing(path: str | Path) -> dict:
    """One run's wall times (train_student.py --timings)."""
    try:
        rec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LineageError("no such timings file", path=path) from None
    except json.JSONDecodeError as exc:
        raise LineageError(f"not JSON ({exc})", path=path) from None
    missing = [k for k in ("method", "seed", "train_seconds", "eval_seconds", "load_seconds", "steps")
               if not isinstance(rec, dict) or k not in rec]
    if missing:
        raise LineageError(f"not a student timings file: missing key(s) {', '.join(missing)}", path=path)
    return rec


def timing_rows(rows: list[dict], timings: list[tuple[str, dict]]) -> list[dict]:
    """Rows of student_timings.csv in the table's order; `timings`: (path, read_timing record)."""
    by_run = {}
    for path, rec in timings:
        key = (rec["method"], rec.get("format", MAIN), int(rec["seed"]))
        if key in by_run:
            raise LineageError(f"a second timings file for method {key[0]} format {key[1]} seed {key[2]}", path=path)
        by_run[key] = rec
    out = []
    for r in rows:
        rec = by_run.get((r["method"], r["format"], r["seed"]))
        if rec is None:
            raise LineageError(f"no timings file for method {r['method']} format {r['format']} seed {r['seed']}")
        train = float(rec["train_seconds"])
        out.append({"method": r["method"], "format": r["format"], "seed": r["seed"], "train_seconds": train,
                    "steps_per_second": int(rec["steps"]) / train if train > 0 else None,
                    "eval_seconds": float(rec["eval_seconds"]), "load_seconds": float(rec["load_seconds"]),
                    "device": rec.get("device")})
    return out


def timing_lines(timings: list[dict]) -> list[str]:
    by_method = defaultdict(list)
    for t in timings:
        by_method[group_key(t["method"], t["format"])].append(t)
    return [f"{m:>10}: training loop {statistics.fmean(t['train_seconds'] for t in ts):.1f} s, "
            f"held-out evaluation {statistics.fmean(t['eval_seconds'] for t in ts):.1f} s, "
            f"loading {statistics.fmean(t['load_seconds'] for t in ts):.1f} s (mean of {len(ts)})"
            for m, ts in by_method.items()]


def write_csv(path: str | Path, columns, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])


def read_table(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_summary(path: str | Path, summary: dict) -> None:
    write_json(path, summary)


def plot_students(rows: list[dict], summary: dict, path: str | Path) -> None:
    """KL to the teacher and CE per method: each seed a dot, the mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(m, summary["methods"][m], [r for r in rows if r["method"] == m and r["format"] == MAIN])
              for m in summary["methods"]]
    groups += [(f"compressed\n{fmt}\n{e['bytes_per_token'] or 0:.0f} B/tok", e,
                [r for r in rows if r["method"] == "compressed" and r["format"] == fmt])
               for fmt, e in summary.get("formats", {}).items() if fmt != MAIN]
    curves = any(r["heldout_curve"] for r in rows)
    fig, axes = plt.subplots(1, 3 if curves else 2,
                             figsize=(10 + 1.2 * max(0, len(groups) - 4) + (5 if curves else 0), 4.2))
    # KL: bars from 0 (the ratio between methods is the point); CE: its axis cannot start at
    # 0 and stay readable, so the mean is a marker, not a bar.
    for ax, metric, label, bars in ((axes[0], "kl_to_teacher", "held-out KL(teacher ‖ student), nats/token", True),
                                    (axes[1], "ce", "held-out cross-entropy on the true tokens, nats/token", False)):
        for x, (_, e, members) in enumerate(groups):
            values = [r[metric] for r in members]
            jitter = [x + 0.08 * (i - (len(values) - 1) / 2) for i in range(len(values))]
            if bars:
                ax.bar(x, e[f"{metric}_mean"], width=0.6, color=f"C{x}", alpha=0.35)
            else:
                ax.scatter([x + 0.22], [e[f"{metric}_mean"]], marker="D", color=f"C{x}", edgecolor="black", zorder=3)
            ax.errorbar(x + (0 if bars else 0.22), e[f"{metric}_mean"], yerr=e[f"{metric}_std"], fmt="none",
                        ecolor="black", capsize=6)
            ax.scatter(jitter, values, color=f"C{x}", edgecolor="black", zorder=3, s=22)
        if metric == "ce":
            ax.axhline(summary["teacher"]["ce"], color="grey", ls="--", lw=1, label="teacher")
            ax.legend(loc="upper right", fontsize=8)
        else:
            ax.set_ylim(bottom=0.0)
        ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if curves:
        _plot_curves(axes[2], groups)
    gap = summary["gap_closed"].get("compressed")
    title = f"Students on held-out assistant tokens ({summary['heldout']['tokens']} tokens)"
    if gap is not None:
        title += f": compressed closes {100 * gap:.1f} % of the sft → dense gap"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _plot_curves(ax, groups) -> None:
    """Held-out KL (the shards' estimate) against steps: per method and format the mean over
    seeds at the steps all its seeds share, each seed a thin line."""
    for x, (name, _, members) in enumerate(groups):
        runs = [dict(r["heldout_curve"]) for r in members if r["heldout_curve"]]
        if not runs:
            continue
        for run in runs:
            steps = sorted(run)
            ax.plot(steps, [run[s] for s in steps], color=f"C{x}", lw=0.6, alpha=0.4)
        shared = sorted(set.intersection(*(set(r) for r in runs)))
        ax.plot(shared, [sum(r[s] for r in runs) / len(runs) for s in shared], color=f"C{x}", lw=1.8, marker="o",
                ms=3, label=name.replace("\n", " "))
    ax.set_xlabel("optimizer step", fontsize=9)
    ax.set_ylabel("held-out KL, estimated from the shards", fontsize=9)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
