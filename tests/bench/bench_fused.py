"""Benchmark 11: the fused-linear sparse KD loss against the full logits, forward + backward.

Workload: a student head the size of Qwen2.5-0.5B's (V = 151,936, d = 896) on N = 4,096
tokens, float32 on CPU: hidden states h [N, d] and head weight W [V, d], both requiring
gradients (the inputs, 0.56 GB). Targets: Zipf-like teacher rows at V = 151,936
(`workloads.zipf_logits`) compressed by the extraction's `compress_rows` at the default
parameters (top_p 0.98, cap 100, sampled_n 24): a pool of 512 compressed rows tiled to N
(what the loss costs does not depend on which rows they are).
Cases, each `loss.backward()` after the forward, forward KL with the "unbiased" estimator:
- (a) full logits + `kd_loss`: `kd_loss(h @ W.T, targets)` (the logits and their gradient
  are [N, V] float32, 2.5 GB each);
- (b) fused: `kd_loss_from_hidden(h, W, targets)` (default chunk: a 256 MiB [441, V] block);
- (c) plain cross-entropy on the full logits: `torch.nn.functional.cross_entropy(h @ W.T, labels)`.
Peak memory: each case runs in a fresh process (`python bench_fused.py probe …`): the inputs
and targets are made, one small call of the same case runs (kernels, thread pools), the RSS
high-water mark is reset, and one forward + backward is measured (VmHWM − VmRSS before it):
everything the step allocates counts, the gradients it returns (W.grad 0.54 GB, h.grad)
included; a second figure subtracts those returned gradients (what every case must hand
back), which is the memory the method itself needs. Time: wall-clock of the forward +
backward, median over rounds in that process after the measured one.
Goals: (b)'s peak above the inputs ≤ 10 % of (a)'s; (b)'s time ≤ 1.3× (a)'s.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from benchlib import Result, fmt_bytes, median, peak_since_reset, reset_peak  # noqa: E402
from context import CAP, SAMPLED_N, SEED, TOP_P  # noqa: E402

BENCH = "11 fused KD loss"
VOCAB, DIM, TOKENS, POOL = 151_936, 896, 4_096, 512
MEMORY_GOAL, TIME_GOAL = 0.10, 1.3
CASES = ("full", "fused", "ce")
LABELS = {"full": "(a) full logits + kd_loss", "fused": "(b) kd_loss_from_hidden",
          "ce": "(c) cross_entropy on full logits"}


def make_targets(path: Path, tokens: int = TOKENS, vocab: int = VOCAB, pool: int = POOL, chunk: int = 256) -> None:
    """Compressed Zipf rows → `SparseTargets` [1, tokens] saved as a dict of tensors."""
    from logit_lineage.kd import targets_from_compressed
    from logit_lineage.teacher.compress import BlockNoise, Compressed, compress_rows
    from workloads import zipf_logits

    parts = []
    for a in range(0, pool, chunk):
        m = min(chunk, pool - a)
        logits = zipf_logits(m, vocab, seed=SEED + a)
        parts.append(compress_rows(logits, BlockNoise.for_example(SEED, a, m, torch.Generator()), top_p=TOP_P,
                                   cap=CAP, k=SAMPLED_N))
        del logits
    reps = -(-tokens // pool)
    c = Compressed(**{f.name: torch.cat([getattr(p, f.name) for p in parts] * reps)[:tokens]
                      for f in fields(Compressed)})
    t = targets_from_compressed(c, token_ids=c.top_ids[:, 0], vocab_size=vocab)
    torch.save({f.name: getattr(t, f.name) for f in fields(t)}, path)


def load_targets(path: Path):
    from logit_lineage.kd import SparseTargets

    return SparseTargets(**torch.load(path, weights_only=True))


def inputs(tokens: int, vocab: int, dim: int, seed: int = SEED):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn((tokens, dim), generator=g).requires_grad_()
    w = (torch.randn((vocab, dim), generator=g) * (2.0 / dim**0.5)).requires_grad_()  # logits of std ≈ 2
    return h, w


def step(case: str, h: torch.Tensor, w: torch.Tensor, targets) -> float:
    """One forward + backward of a case; the logits are never held by this frame."""
    from logit_lineage.kd import kd_loss, kd_loss_from_hidden

    h.grad = w.grad = None
    if case == "full":
        loss = kd_loss(h @ w.T, targets)
    elif case == "fused":
        loss = kd_loss_from_hidden(h, w, targets)
    else:
        loss = torch.nn.functional.cross_entropy(h @ w.T, targets.token_ids[targets.mask])
    loss.backward()
    return float(loss.detach())


def probe(spec: dict) -> dict:
    """In this (fresh) process: peak extra RSS of one step, then timed rounds."""
    torch.manual_seed(0)
    targets = load_targets(Path(spec["targets"]))
    small = load_targets(Path(spec["small"]))
    hs, ws = inputs(small.num_tokens, small.vocab_size, spec["dim"])
    step(spec["case"], hs, ws, small)  # kernels, thread pools
    del hs, ws
    h, w = inputs(targets.num_tokens, spec["vocab"], spec["dim"])
    gc.collect()
    before = reset_peak()
    t0 = time.perf_counter()
    loss = step(spec["case"], h, w, targets)
    first = time.perf_counter() - t0
    peak = peak_since_reset() - before
    grads = h.grad.numel() * h.grad.element_size() + w.grad.numel() * w.grad.element_size()
    times = [first]
    for _ in range(spec["rounds"] - 1):
        t0 = time.perf_counter()
        step(spec["case"], h, w, targets)
        times.append(time.perf_counter() - t0)
    return {"peak_extra_bytes": peak, "grad_bytes": grads, "times": times, "loss": loss}


def run_probe(case: str, targets: Path, small: Path, rounds: int, vocab: int = VOCAB, dim: int = DIM,
              timeout: float = 3600) -> dict:
    spec = {"case": case, "targets": str(targets), "small": str(small), "rounds": rounds, "vocab": vocab, "dim": dim}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "probe", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_fused probe failed for {case}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(tmp: Path, rounds: int, tokens: int = TOKENS, vocab: int = VOCAB, dim: int = DIM, log=print) -> dict:
    targets, small = tmp / "fused-targets.pt", tmp / "fused-targets-small.pt"
    t0 = time.perf_counter()
    make_targets(targets, tokens, vocab, pool=min(POOL, tokens))
    make_targets(small, 64, 2_000, pool=64)
    log(f"[bench 11] targets for {tokens:,} tokens at V={vocab:,} in {time.perf_counter() - t0:.0f} s")
    out = {}
    for case in CASES:
        out[case] = run_probe(case, targets, small, rounds, vocab, dim)
        m = out[case]
        log(f"[bench 11] {LABELS[case]}: peak +{fmt_bytes(m['peak_extra_bytes'])}, "
            f"times {', '.join(f'{t:.1f}' for t in m['times'])} s, loss {m['loss']:.4f}")
    return out


def results(m: dict, rounds: int) -> list[Result]:
    a, b, c = m["full"], m["fused"], m["ce"]
    t = {k: median(v["times"][1:] if len(v["times"]) > 1 else v["times"]) for k, v in m.items()}
    mem_ratio = b["peak_extra_bytes"] / a["peak_extra_bytes"]
    own = {k: v["peak_extra_bytes"] - v["grad_bytes"] for k, v in m.items()}
    own_ratio = own["fused"] / own["full"]
    time_ratio = t["fused"] / t["full"]
    case = f"V={VOCAB:,}, d={DIM}, N={TOKENS:,}, CPU float32"
    loss_gap = abs(a["loss"] - b["loss"]) / max(abs(a["loss"]), 1e-12)
    note = (f"forward + backward, forward KL 'unbiased', T = 1; (c) cross_entropy: peak +{fmt_bytes(c['peak_extra_bytes'])}, "
            f"{t['ce']:.1f} s; returned gradients (W.grad + h.grad) {fmt_bytes(a['grad_bytes'])}, counted in the peak; "
            f"without them: (a) +{fmt_bytes(own['full'])}, (b) +{fmt_bytes(own['fused'])}, (c) +{fmt_bytes(own['ce'])}; "
            f"time: median of {max(1, rounds - 1)} rounds after the measured one, each case in its own process; "
            f"loss (a) {a['loss']:.5f} vs (b) {b['loss']:.5f} (relative gap {loss_gap:.1e})")
    return [
        Result(BENCH, case, "peak memory above the inputs, (b) vs (a)", f"+{fmt_bytes(b['peak_extra_bytes'])}",
               f"+{fmt_bytes(a['peak_extra_bytes'])}", f"{mem_ratio:.1%}", f"≤ {MEMORY_GOAL:.0%}",
               mem_ratio <= MEMORY_GOAL, note),
        Result(BENCH, case, "peak memory above the inputs and the returned gradients, (b) vs (a)",
               f"+{fmt_bytes(own['fused'])}", f"+{fmt_bytes(own['full'])}", f"{own_ratio:.1%}",
               f"≤ {MEMORY_GOAL:.0%}", own_ratio <= MEMORY_GOAL),
        Result(BENCH, case, "forward + backward time, (b) vs (a)", f"{t['fused']:.1f} s", f"{t['full']:.1f} s",
               f"{time_ratio:.2f}×", f"≤ {TIME_GOAL}×", time_ratio <= TIME_GOAL),
    ]


def run(ctx) -> list[Result]:
    rounds = max(2, min(3, ctx.repeats))
    m = measure(ctx.tmp, rounds, log=ctx.log)
    res = results(m, rounds)
    for r in res:
        print(f"{r.bench} / {r.metric}: {r.ours} vs {r.base} ({r.ratio}; target {r.target})")
    return res


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        print(json.dumps(probe(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: bench_fused.py probe '<json spec>' (run by test_bench_11_fused.py / make bench)")
