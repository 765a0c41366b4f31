"""Per-shard extraction: teacher forward over token-budget batches → compressed records.

Progress is kept batch by batch in `<output>.partial/` (each batch an atomic
parquet of the final format). A SIGTERM or the runtime limit stops after the
current batch; the rerun skips finished batches and, because the batch plan is
a pure function of the shard, computes the rest exactly as an uninterrupted run
would, so the final file is byte-identical. One process at a time writes a shard:
it holds an exclusive lock on `<output>.partial/lock` for the whole extraction
(:class:`PartialLock`); a second one (say a requeued SLURM job while the first
still runs) stops at once with one line and touches nothing.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.logits import ExampleRecord, build_table, records_from_rows, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.batching import plan_batches
from logit_lineage.teacher.compress import NOISE_BLOCK, BlockNoise, Compressed, Workspace, compress_rows
from logit_lineage.teacher.data import Row
from logit_lineage.teacher.load import decoder_hidden, head_logits

log = logging.getLogger("logit_lineage")


@dataclass(frozen=True, kw_only=True)
class ExtractionSettings:
    compression: CompressionParams
    seed: int
    token_budget: int
    max_batch_size: int
    head_chunk_rows: int


class StopRequested(Exception):
    """The run stopped early (signal or runtime limit); progress was kept."""


class StopFlag:
    """Turns SIGTERM/SIGINT into a flag checked between batches."""

    TIMEOUT = "max runtime reached"

    def __init__(self, max_runtime_s: float | None = None):
        self.reason: str | None = None
        self.deadline = None if max_runtime_s is None else time.monotonic() + max_runtime_s

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.reason = signal.Signals(signum).name

    def check(self) -> str | None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = self.TIMEOUT
        return self.reason


def _units(rows: list[Row]):
    """(row in batch, block number, positions) — the unit one noise draw covers."""
    for j, row in enumerate(rows):
        for b in range(0, len(row.kept), NOISE_BLOCK):
            yield j, b // NOISE_BLOCK, row.kept[b : b + NOISE_BLOCK]


def _chunks(units, max_rows: int):
    chunk, n = [], 0
    for unit in units:
        if chunk and n + len(unit[2]) > max_rows:
            yield chunk
            chunk, n = [], 0
        chunk.append(unit)
        n += len(unit[2])
    if chunk:
        yield chunk


@torch.inference_mode()
def batch_hidden(model, rows: list[Row], pad_id: int) -> torch.Tensor:
    """Right-padded batch through the decoder body: hidden states [B, T, H]."""
    dev = next(model.parameters()).device
    width = max(len(r.ids) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        input_ids[j, : len(r.ids)] = torch.from_numpy(r.ids)
        attention[j, : len(r.ids)] = 1
    return decoder_hidden(model, input_ids.to(dev), attention.to(dev))


@torch.inference_mode()
def compress_batch(model, rows: list[Row], settings: ExtractionSettings, pad_id: int,
                   workspace: Workspace, generator: torch.Generator) -> list[ExampleRecord]:
    dev = next(model.parameters()).device
    hidden = batch_hidden(model, rows, pad_id)

    # Results stay on the device until the batch is done: one transfer per field,
    # not one synchronisation per chunk.
    done_chunks: list[Compressed] = []
    cp = settings.compression
    for chunk in _chunks(_units(rows), settings.head_chunk_rows):
        js = np.concatenate([np.full(len(pos), j) for j, _, pos in chunk])
        ts = np.concatenate([pos for _, _, pos in chunk])
        # Row for token t comes from position t−1: the distribution that predicts t.
        h = hidden[torch.from_numpy(js).to(dev), torch.from_numpy(ts - 1).to(dev)]
        logits = head_logits(model, h)
        noise = BlockNoise(settings.seed, [(rows[j].index, block, len(pos)) for j, block, pos in chunk],
                           generator, dev)
        done_chunks.append(compress_rows(logits, noise, top_p=cp.top_p, cap=cp.top_p_max_elements,
                                         k=cp.sampled_n, workspace=workspace))

    if not done_chunks:
        return _records(rows, None)
    fields = Compressed.__dataclass_fields__
    return _records(rows, {name: torch.cat([getattr(c, name) for c in done_chunks]).cpu().numpy()
                           for name in fields})


def _records(rows: list[Row], out: dict[str, np.ndarray] | None) -> list[ExampleRecord]:
    """Per-example records from a batch's per-token results (`compress_rows` fields, one
    row per kept token, examples in order and each example's tokens in order)."""
    if out is None:  # no kept tokens in the batch
        out = {"top_counts": np.zeros(0, np.int64), "sampled_counts": np.zeros(0, np.int64),
               "top_ids": np.zeros((0, 0), np.int64), "top_logits": np.zeros((0, 0), np.float32),
               "sampled_ids": np.zeros((0, 0), np.int64), "sampled_logits": np.zeros((0, 0), np.float32),
               "logsumexp": np.zeros(0), "threshold": np.zeros(0)}
    return records_from_rows(out, [r.index for r in rows], [r.kept for r in rows], [r.ids[r.kept] for r in rows])


def _table(records: list[ExampleRecord], vocab: int, settings: ExtractionSettings):
    return build_table(records, vocab, version=settings.compression.format_version, seed=settings.seed)


def _fingerprint(meta_params: dict, rows: list[Row], batches) -> str:
    h = hashlib.sha256(json.dumps(meta_params, sort_keys=True).encode())
    for r in rows:
        h.update(np.int64(r.index).tobytes())
        h.update(r.kept.astype(np.int64).tobytes())
    for b in batches:
        h.update(np.asarray(b, dtype=np.int64).tobytes() + b"|")
    return h.hexdigest()


class PartialLock:
    """Exclusive, non-blocking `flock` on `<partial>/lock`: one writer per shard.

    The lock is taken before anything in the folder is read or changed, and held
    until the run ends, so a second writer never sees a half-made decision:
    - it is taken first, and only then is a partial of another fingerprint
      discarded, by emptying the folder around the lock file (never removing the
      folder or the lock a holder has open): the lock must exist before one can
      decide anything, and it lives in the folder it guards;
    - flock belongs to the open file, not to the name: a process that dies (even
      by SIGKILL) releases it, so a stale lock never blocks a rerun; and a process
      that opened the lock file just before the holder's final clean-up unlinked
      it would lock a deleted file, so after locking we check that the name still
      leads to the file we hold, else start again (the folder may be gone too);
    - the final clean-up unlinks the lock while still holding it, then removes
      the folder only if it is empty: a newcomer that made a fresh lock in it
      in the meantime owns the folder from then on.
    flock works across machines on NFS (Linux emulates it with POSIX locks) and on
    Lustre mounted with `-o flock`.
    """

    NAME = "lock"

    def __init__(self, partial: Path, output: Path):
        self.partial, self.output = Path(partial), Path(output)
        self.path = self.partial / self.NAME
        self.fd: int | None = None

    def acquire(self) -> "PartialLock":
        for _ in range(100):  # more than one round only while another writer is finishing
            self.partial.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder went away under us: make it again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                raise LineageError(
                    f"another process is writing {self.output} (lock {self.path} held"
                    f"{' by ' + holder if holder else ''}); let it finish, or stop it and rerun: "
                    "its progress is kept") from None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                self.fd = fd
                # Who holds it, for the message a second writer prints.
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
                return self
            os.close(fd)  # we locked a file its holder had just deleted: try again
        raise LineageError(f"could not lock {self.path}: it keeps being removed by another process")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the flock
            self.fd = None

    def clear(self) -> None:
        """Remove everything in the folder but the lock (only while holding it)."""
        assert self.fd is not None
        for entry in self.partial.iterdir():
            if entry.name == self.NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def remove_partial(self) -> None:
        """The run is done: remove the folder, lock last, then release."""
        self.clear()
        os.unlink(self.path)
        try:
            self.partial.rmdir()
        except OSError:  # a newcomer's fresh lock is already in it: the folder is its own now
            pass
        self.release()

    def __enter__(self) -> "PartialLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def partial_lock(output: Path) -> PartialLock:
    """The (not yet taken) lock of `output`'s partial folder."""
    output = Path(output)
    return PartialLock(output.with_name(output.name + ".partial"), output)


def extract_shard(model, rows: list[Row], settings: ExtractionSettings, meta_params: dict,
                  output: Path, pad_id: int, stop: StopFlag, lock: PartialLock | None = None) -> dict:
    """Run (or resume) one shard; write `output` when every batch is done.

    Raises LineageError, having touched nothing, when another process is writing
    the same shard. A caller that took `lock` itself (before loading the teacher,
    so that a second writer stops at once) passes it in.
    """
    output = Path(output)
    if lock is not None:
        return _extract_locked(model, rows, settings, meta_params, output, pad_id, stop, lock)
    with partial_lock(output) as lock:
        return _extract_locked(model, rows, settings, meta_params, output, pad_id, stop, lock)


def _extract_locked(model, rows: list[Row], settings: ExtractionSettings, meta_params: dict,
                    output: Path, pad_id: int, stop: StopFlag, lock: PartialLock) -> dict:
    partial = lock.partial
    lengths = np.array([len(r.ids) for r in rows], dtype=np.int64)
    batches = plan_batches(lengths, settings.token_budget, settings.max_batch_size)
    fingerprint = _fingerprint(meta_params, rows, batches)
    stamp = partial / "fingerprint.txt"
    kept = [p for p in partial.iterdir() if p.name != PartialLock.NAME]
    if kept and (not stamp.exists() or stamp.read_text() != fingerprint):
        log.info("discarding %s: it was made with other parameters or inputs", partial)
        lock.clear()
    stamp.write_text(fingerprint)
    done = {int(p.stem.split("-")[1]) for p in partial.glob("batch-*.parquet")}
    if done:
        log.info("resuming: %d of %d batches already in %s", len(done), len(batches), partial)

    vocab = int(meta_params["vocab_size"])
    dev = next(model.parameters()).device
    generator = torch.Generator(device=dev)
    workspace = Workspace()
    n_tokens = int(sum(len(r.kept) for r in rows))
    bar = tqdm(total=n_tokens, unit="tok", desc=output.name, mininterval=2.0)
    bar.update(int(sum(len(rows[i].kept) for b in done for i in batches[b])))
    ran = 0
    for b, batch in enumerate(batches):
        if b in done:
            continue
        reason = stop.check()
        # A signal stops at once; the runtime limit only after this run made progress,
        # so a limit shorter than start-up still advances the shard each rerun.
        if reason and (ran or reason != StopFlag.TIMEOUT):
            bar.close()
            raise StopRequested(
                f"{reason}: {len(done)}/{len(batches)} batches kept in {partial}; rerun to finish the shard"
            )
        batch_rows = [rows[i] for i in batch]
        records = compress_batch(model, batch_rows, settings, pad_id, workspace, generator)
        write_logits_parquet(partial / f"batch-{b:05d}.parquet", _table(records, vocab, settings), meta_params)
        done.add(b)
        ran += 1
        bar.update(int(sum(len(r.kept) for r in batch_rows)))
    bar.close()

    tables = [pq.read_table(partial / f"batch-{b:05d}.parquet") for b in range(len(batches))]
    if tables:
        table = pa.concat_tables(tables).combine_chunks()
    else:
        table = _table([], vocab, settings)
    write_logits_parquet(output, table, meta_params)
    lock.remove_partial()
    return {"batches": len(batches), "examples": len(rows), "tokens": n_tokens}
