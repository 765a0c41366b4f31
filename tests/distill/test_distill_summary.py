"""The distillation chain's summary (summarize_logits.py): figures per shard and overall, plots, bad input.

The shards are written here from known distributions (no model), so every figure has an
exact expected value."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_script
from logit_lineage.common.errors import LineageError
from logit_lineage.distill.summary import MASS_BINS, dense_hist, read_benchmark_seconds, summarize
from logit_lineage.formats.logits import ExampleRecord, LogitsShard, build_table, write_logits_parquet
from logit_lineage.formats.reader import nucleus_stats

V, TOP_P, CAP, SAMPLED = 300, 0.9, 8, 5


def record(index: int, n_tokens: int, rng) -> tuple[ExampleRecord, list[dict]]:
    """An example whose tokens have random logits (some peaked, some flat enough to hit the cap)."""
    truth, tops, top_l, samp, samp_l, counts, scounts, lses = [], [], [], [], [], [], [], []
    for _ in range(n_tokens):
        z = rng.normal(0, rng.choice([0.5, 6.0]), V).astype(np.float32)
        lse = float(np.log(np.exp(z.astype(np.float64)).sum()))
        order = np.argsort(-z, kind="stable")
        cum = np.cumsum(np.exp(z[order].astype(np.float64) - lse))
        n = min(int(np.searchsorted(cum, TOP_P)) + 1, CAP)
        tail = order[n:n + SAMPLED]
        tops.append(order[:n]), top_l.append(z[order[:n]]), counts.append(n)
        samp.append(tail), samp_l.append(z[tail]), scounts.append(len(tail)), lses.append(lse)
        truth.append({"size": n, "nucleus_mass": float(cum[n - 1]),
                      "stored_mass": float(np.exp(z[order[:n + SAMPLED]].astype(np.float64) - lse).sum())})
    def flat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    rec = ExampleRecord(
        index=index, positions=np.arange(1, n_tokens + 1), token_ids=rng.integers(0, V, n_tokens),
        top_counts=np.array(counts, np.int64), top_ids=flat(tops, np.int64), top_logits=flat(top_l, np.float32),
        sampled_counts=np.array(scounts, np.int64), sampled_ids=flat(samp, np.int64),
        sampled_logits=flat(samp_l, np.float32), logsumexp=np.array(lses, np.float64),
        threshold=np.full(n_tokens, -1.0))
    return rec, truth


PARAMS = {"vocab_size": V, "index_high_bits": 0, "top_p": TOP_P, "top_p_max_elements": CAP, "sampled_n": SAMPLED,
          "seed": 1, "teacher": "synthetic", "dataset": "synthetic", "dtype": "float32"}


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    """Two shards of synthetic records (the second with an empty example) and their benchmark TSVs."""
    root = tmp_path_factory.mktemp("summary")
    rng = np.random.default_rng(0)
    truth, paths, benches = {}, [], []
    for s, (sizes, seconds) in enumerate((([7, 12, 3], 4.0), ([20, 0, 9], 8.0))):
        recs, tokens = [], []
        for i, n in enumerate(sizes):
            rec, t = record(10 * s + i, n, rng)
            recs.append(rec)
            tokens += t
        path = root / "logits" / f"shard-{s:05d}.parquet"
        write_logits_parquet(path, build_table(recs, V), PARAMS)
        bench = root / "bench" / f"shard-{s:05d}.tsv"
        bench.parent.mkdir(exist_ok=True)
        bench.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:0{int(seconds)}\t100.0\n")
        truth[path.stem] = {"tokens": tokens, "seconds": seconds, "examples": len(sizes)}
        paths.append(path)
        benches.append(bench)
    return {"root": root, "paths": paths, "benches": benches, "truth": truth}


def test_figures_per_shard_and_overall(shard_set):
    out = summarize(shard_set["paths"], {p.stem: b for p, b in zip(shard_set["paths"], shard_set["benches"])})
    all_tokens = []
    for path in shard_set["paths"]:
        got, want = out["shards"][path.stem], shard_set["truth"][path.stem]
        toks = want["tokens"]
        all_tokens += toks
        sizes = np.array([t["size"] for t in toks])
        assert (got["examples"], got["tokens"]) == (want["examples"], len(toks))
        assert got["file_bytes"] == path.stat().st_size
        assert got["bytes_per_token"] == pytest.approx(path.stat().st_size / len(toks))
        assert got["tokens_per_s"] == pytest.approx(len(toks) / want["seconds"])
        assert got["capped_fraction"] == pytest.approx((sizes >= CAP).mean())
        assert got["nucleus_size_mean"] == pytest.approx(sizes.mean())
        assert got["nucleus_size_median"] == int(np.percentile(sizes, 50, method="inverted_cdf"))
        assert got["nucleus_mass_mean"] == pytest.approx(np.mean([t["nucleus_mass"] for t in toks]), abs=1e-4)
        assert got["stored_mass_mean"] == pytest.approx(np.mean([t["stored_mass"] for t in toks]), abs=1e-4)
        assert got["nucleus_mass_min"] == pytest.approx(min(t["nucleus_mass"] for t in toks), abs=1e-4)
        assert got["sampled_per_token"] == SAMPLED
        # The reader's own statistics of the shard say the same.
        stats = nucleus_stats(LogitsShard(path))
        assert stats["capped_fraction"] == pytest.approx(got["capped_fraction"])
        assert stats["nucleus_mass_mean"] == pytest.approx(got["nucleus_mass_mean"])
        assert {int(k): v for k, v in stats["histogram"].items()} == {
            int(k): v for k, v in got["nucleus_size_histogram"].items()}
    overall = out["overall"]
    total_bytes = sum(p.stat().st_size for p in shard_set["paths"])
    assert (overall["shards"], overall["tokens"]) == (2, len(all_tokens))
    assert overall["tokens_per_s"] == pytest.approx(len(all_tokens) / 12.0)
    assert overall["bytes_per_token"] == pytest.approx(total_bytes / len(all_tokens))
    sizes = dense_hist(out["histograms"]["nucleus_size"], 256)
    assert sizes.sum() == len(all_tokens) and sizes[CAP + 1:].sum() == 0
    masses = dense_hist(out["histograms"]["stored_mass"], MASS_BINS)
    assert masses.sum() == len(all_tokens)
    assert out["params"]["top_p"] == TOP_P and out["params"]["top_p_max_elements"] == CAP


def test_without_benchmarks_there_is_no_rate(shard_set):
    out = summarize(shard_set["paths"][:1])
    assert out["overall"]["tokens_per_s"] is None and out["shards"]["shard-00000"]["tokens_per_s"] is None
    assert out["overall"]["bytes_per_token"] > 0


@pytest.mark.parametrize("name", ["summarize_logits.py", "generate_answers.py"])
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout and len(proc.stdout.splitlines()) > 5


def test_cli_writes_json_and_three_plots(shard_set, tmp_path):
    outs = {name: tmp_path / f"{name}.png" for name in ("nucleus", "mass", "shards")}
    args = [a for p in shard_set["paths"] for a in ("--logits", str(p))]
    args += [a for b in shard_set["benches"] for a in ("--benchmark", str(b))]
    proc = run_script("summarize_logits.py", *args, "--json", str(tmp_path / "summary.json"),
                      "--nucleus-plot", str(outs["nucleus"]), "--mass-plot", str(outs["mass"]),
                      "--shards-plot", str(outs["shards"]), check=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["overall"]["shards"] == 2 and "tok/s" in proc.stdout
    for png in outs.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_refuses_a_benchmark_without_its_shard(shard_set, tmp_path):
    stray = tmp_path / "shard-00042.tsv"
    stray.write_text("s\n1.0\n")
    proc = run_script("summarize_logits.py", "--logits", str(shard_set["paths"][0]), "--benchmark", str(stray),
                      "--json", str(tmp_path / "s.json"), "--nucleus-plot", str(tmp_path / "n.png"),
                      "--mass-plot", str(tmp_path / "m.png"), "--shards-plot", str(tmp_path / "x.png"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no shard of the same stem 'shard-00042'" in proc.stderr
    assert not (tmp_path / "s.json").exists()


def test_bad_benchmark_file_is_one_line(tmp_path):
    bad = tmp_path / "shard-00000.tsv"
    bad.write_text("seconds\n1\n")
    with pytest.raises(LineageError) as info:
        read_benchmark_seconds(bad)
    assert "expected a numeric 's' column" in str(info.value) and "\n" not in str(info.value)


def test_shards_with_other_parameters_are_refused(shard_set, tmp_path):
    rec, _ = record(0, 3, np.random.default_rng(1))
    other = tmp_path / "shard-00009.parquet"
    write_logits_parquet(other, build_table([rec], V), PARAMS | {"top_p": 0.5})
    with pytest.raises(LineageError) as info:
        summarize([shard_set["paths"][0], other])
    assert "differ from the first shard's" in str(info.value)
