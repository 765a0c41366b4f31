"""Benchmark plumbing: paired interleaved timing, peak-memory probes, the results table.

Timing: the two methods of a comparison run alternately in one process
(A B, B A, A B, …: the order flips each round so drift and cache warmth hit both
alike), after a warm-up call of each; a figure is the median over the rounds,
and a ratio is the median of the per-round ratios.

Peak memory: `peak_rss_delta` runs a function in a fresh Python process and
reports VmHWM − VmRSS (Linux /proc/self/status) around the call, the high-water
mark having been reset just before it (`/proc/self/clear_refs` ← 5). It counts
every page the call touches — torch's CPU allocations, numpy, Python — and
nothing from an earlier call, since the process is new.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def median(xs) -> float:
    return float(statistics.median(xs))


@dataclass
class Paired:
    a: list[float] = field(default_factory=list)  # seconds per round, method A
    b: list[float] = field(default_factory=list)

    @property
    def a_med(self) -> float:
        return median(self.a)

    @property
    def b_med(self) -> float:
        return median(self.b)

    @property
    def ratio_b_over_a(self) -> float:
        """Median over rounds of t_B / t_A (paired: each round's two calls ran back to back)."""
        return median([b / a for a, b in zip(self.a, self.b)])


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired_times(fa, fb, repeats: int, warmup: int = 1) -> Paired:
    """Interleaved timing of two zero-argument callables (see module docstring)."""
    for _ in range(warmup):
        fa()
        fb()
    out = Paired()
    for r in range(repeats):
        if r % 2 == 0:
            out.a.append(_timed(fa))
            out.b.append(_timed(fb))
        else:
            out.b.append(_timed(fb))
            out.a.append(_timed(fa))
    return out


# --- peak memory in a fresh process -------------------------------------------------------------

def _proc_status() -> dict[str, int]:
    vals = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, rest = line.split(":", 1)
                vals[key] = int(rest.split()[0]) * 1024
    return vals


def reset_peak() -> int:
    """Reset this process's RSS high-water mark; return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _proc_status()["VmRSS"]


def peak_since_reset() -> int:
    return _proc_status()["VmHWM"]


def peak_rss_delta(spec: dict, timeout: float = 900) -> int:
    """Peak extra RSS (bytes) of one call described by `spec`, run by memprobe.py in a new process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(HERE / "memprobe.py"), json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memprobe failed for {spec}:\n{proc.stderr[-3000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_bytes"])


# --- machine ------------------------------------------------------------------------------------

def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": mem_gb,
        "load_avg_1m_at_start": round(load[0], 2),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit,
    }


# --- results ------------------------------------------------------------------------------------

@dataclass
class Result:
    bench: str  # "1 compression", …
    case: str  # workload / setting
    metric: str
    ours: str  # this project's figure
    base: str  # the baseline's figure (or "")
    ratio: str  # as the target states it
    target: str = ""
    met: bool | None = None  # None: no target for this row
    note: str = ""

    @property
    def status(self) -> str:
        return "" if self.met is None else ("yes" if self.met else "NO")


COLUMNS = [("bench", "benchmark"), ("case", "case"), ("metric", "metric"), ("ours", "this project"),
           ("base", "baseline"), ("ratio", "ratio"), ("target", "target"), ("status", "met")]


def _cells(r: Result) -> list[str]:
    return [str(getattr(r, k)) for k, _ in COLUMNS]


def format_table(results: list[Result], machine: dict) -> str:
    head = [h for _, h in COLUMNS]
    rows = [_cells(r) for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [f"machine: {machine_line(machine)}", line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    notes = [f"  [{i + 1}] {r.bench} / {r.case}: {r.note}" for i, r in enumerate(results) if r.note]
    if notes:
        out += ["notes:"] + notes
    return "\n".join(out)


def machine_line(m: dict) -> str:
    return (f"{m['date']} · {m['cpu']} · {m['cores']} cores (torch threads {m['torch_threads']}) · "
            f"{m['memory_gb']} GB RAM · load {m['load_avg_1m_at_start']} at start · GPU {m['gpu']} · "
            f"Python {m['python']} · torch {m['torch']} · commit {m['commit']}")


def markdown_table(results: list[Result], machine: dict, command: str) -> str:
    esc = lambda s: str(s).replace("|", "\\|")
    out = [f"Measured on: {machine_line(machine)}.", "",
           f"Command: `{command}`", "",
           "| " + " | ".join(h for _, h in COLUMNS) + " |",
           "|" + "|".join("---" for _ in COLUMNS) + "|"]
    out += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in results]
    notes = [f"- {r.bench} / {r.case}: {esc(r.note)}" for r in results if r.note]
    if notes:
        out += ["", "Notes:", ""] + notes
    return "\n".join(out) + "\n"


def fmt_rate(x: float) -> str:
    return f"{x:,.0f} tok/s" if x >= 100 else f"{x:,.1f} tok/s"


def fmt_bytes(n: float) -> str:
    for unit, div in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(n) >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n:,.0f} B"


def missed(results) -> list[str]:
    """Rows with a target that was not met, as lines for an assertion message."""
    return [f"{r.bench} / {r.case} / {r.metric}: {r.ours} vs {r.base} ({r.ratio}); target {r.target}"
            for r in results if r.met is False]
