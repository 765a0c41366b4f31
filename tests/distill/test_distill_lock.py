"""Two writers of one shard (a requeued SLURM job while the first still runs): the lock
in `<output>.partial/` lets the first finish and sends the second away, touching nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SCRIPTS, extract_args, run_script, subprocess_env
from logit_lineage.common.errors import LineageError
from logit_lineage.distill.extract import ExtractionSettings, PartialLock, StopFlag, extract_shard
from logit_lineage.formats.params import CompressionParams

# The first writer: the real extraction script, paused after its first batch until the
# test creates the gate file (it touches <gate>.waiting when it gets there).
PAUSED_EXTRACTION = """
import runpy, sys, time
from pathlib import Path
import logit_lineage.distill.extract as extract

gate = Path(sys.argv[1])
write = extract.write_logits_parquet

def write_then_wait(path, *args, **kwargs):
    write(path, *args, **kwargs)
    if Path(path).name.startswith("batch-") and not gate.exists():
        Path(str(gate) + ".waiting").touch()
        while not gate.exists():
            time.sleep(0.05)

extract.write_logits_parquet = write_then_wait
script = sys.argv[2]
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def reference(shard, tmp_path_factory):
    """An undisturbed extraction of the shard."""
    out = tmp_path_factory.mktemp("reference") / "shard.parquet"
    run_script("extract_logits.py", *extract_args(shard, out), check=True)
    return out.read_bytes()


def start_paused_writer(shard, out: Path, gate: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_EXTRACTION, str(gate), str(SCRIPTS / "extract_logits.py"),
         *extract_args(shard, out)],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = Path(str(gate) + ".waiting")
    deadline = time.monotonic() + 300
    while not waiting.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not waiting.exists():
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the first writer never paused after a batch:\n{err[-4000:]}")
    return proc


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_second_writer_refuses_and_first_finishes_with_undisturbed_bytes(shard, reference, tmp_path):
    out = tmp_path / "shard.parquet"
    partial = tmp_path / "shard.parquet.partial"
    gate = tmp_path / "gate"
    first = start_paused_writer(shard, out, gate)
    try:
        before = snapshot(partial)
        assert "batch-00000.parquet" in before and PartialLock.NAME in before
        assert before[PartialLock.NAME].decode().startswith(f"pid {first.pid} on ")

        second = run_script("extract_logits.py", *extract_args(shard, out))
        assert second.returncode != 0
        # It stops before loading anything: its whole output is the one error line.
        errors = second.stderr.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("error:"), second.stderr[-3000:]
        assert "Traceback" not in second.stderr
        assert errors[0].startswith(f"error: another process is writing {out} (lock {partial / 'lock'} held "
                                    f"by pid {first.pid} on "), errors[0]
        # The second touched nothing: the first's finished batches, stamp and lock are as they were.
        assert snapshot(partial) == before
        assert not out.exists()
    finally:
        gate.touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-4000:]
    assert out.read_bytes() == reference
    assert not partial.exists()


def test_a_killed_writer_leaves_no_lock_that_blocks_the_rerun(shard, reference, tmp_path):
    out = tmp_path / "shard.parquet"
    partial = tmp_path / "shard.parquet.partial"
    first = start_paused_writer(shard, out, tmp_path / "gate")
    first.send_signal(signal.SIGKILL)  # no clean-up at all: the lock file stays behind
    first.communicate(timeout=60)
    assert (partial / PartialLock.NAME).exists() and (partial / "batch-00000.parquet").exists()
    rerun = run_script("extract_logits.py", *extract_args(shard, out), check=True)
    assert "resuming" in rerun.stderr
    assert out.read_bytes() == reference and not partial.exists()


# --- in-process: a held lock guards even a stale partial ---------------------------------

def _settings():
    return ExtractionSettings(compression=CompressionParams(format_version=2, top_p=0.9, top_p_max_elements=10, sampled_n=2), seed=1, token_budget=100, max_batch_size=4,
                              head_chunk_rows=64)


def test_a_stale_partial_is_not_discarded_while_its_lock_is_held(tmp_path):
    out = tmp_path / "s.parquet"
    partial = tmp_path / "s.parquet.partial"
    partial.mkdir()
    (partial / "fingerprint.txt").write_text("made with other parameters")
    (partial / "batch-00000.parquet").write_bytes(b"someone's batch")
    # flock conflicts between two open files even in one process: this is "another writer".
    with PartialLock(partial, out):
        before = snapshot(partial)
        with pytest.raises(LineageError, match=r"another process is writing .*s\.parquet \(lock .*held by pid "):
            extract_shard(None, [], _settings(), {"vocab_size": 8}, out, 0, StopFlag())
        assert snapshot(partial) == before
    assert not out.exists()


def test_the_lock_is_released_on_every_exit_and_taken_again(tmp_path):
    out = tmp_path / "s.parquet"
    partial = tmp_path / "s.parquet.partial"
    lock = PartialLock(partial, out).acquire()
    lock.release()
    with PartialLock(partial, out) as held:
        (partial / "batch-00003.parquet").write_bytes(b"x")
        held.clear()
        assert sorted(os.listdir(partial)) == [PartialLock.NAME]
        held.remove_partial()
    assert not partial.exists()
    with PartialLock(partial, out):  # a fresh folder and lock after the clean-up
        assert (partial / PartialLock.NAME).exists()


def test_a_stale_partial_of_an_unheld_lock_is_discarded(tmp_path, caplog):
    import torch

    from logit_lineage.formats.indices import high_bits_for_vocab

    out = tmp_path / "s.parquet"
    partial = tmp_path / "s.parquet.partial"
    partial.mkdir()
    (partial / "fingerprint.txt").write_text("made with other parameters")
    (partial / "batch-00007.parquet").write_bytes(b"not of this run")
    (partial / PartialLock.NAME).write_text("pid 1 on a node that died\n")
    params = {"vocab_size": 8, "index_high_bits": high_bits_for_vocab(8), "top_p": 0.9, "top_p_max_elements": 10,
              "sampled_n": 2, "seed": 1}
    with caplog.at_level("INFO", logger="logit_lineage"):
        stats = extract_shard(torch.nn.Linear(1, 1), [], _settings(), params, out, 0, StopFlag())
    assert "discarding" in caplog.text
    assert stats["batches"] == 0 and out.exists() and not partial.exists()
