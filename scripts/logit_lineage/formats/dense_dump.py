"""Dense logit dumps: one safetensors file + a metadata JSON + a gzipped JSON summary.

A dump with stem `X` is three files side by side (the layout of the original dense-dump tool):

- `X.safetensors`: one 1-D tensor [vocab] of raw logits per entry, named by its
  key `sample_<s>_entry_<e>`; the safetensors header's `__metadata__` carries
  `logit_lineage.format` and `logit_lineage.format_version`;
- `X.metadata.json`: a JSON array, one object per key, in key order:
  `key`, `sample_idx`, `entry_idx`, `example_idx`, `position`, and the
  caller's own fields (JSON scalars);
- `X.json.gz`: the summary that points at both (`logits_file`, `metadata_file`,
  names relative to the summary's folder), with `format`, `format_version`,
  `num_entries`, `vocab_size`, `dtype`, `logits_bytes` (the safetensors file's
  size, so a truncated file is caught before it is opened), `fields` (the
  caller fields every entry has) and `info` (free-form caller JSON).

The summary is the dump's handle: readers open it, check it, and find the
other two. Writers write the summary last, each file atomically, so a dump
whose summary exists is complete. Logits are never stored as JSON lists.

`DenseDump(summary).load(keys)` reads only the requested tensors
(safetensors' lazy `safe_open`), after checking that the metadata and the
safetensors header list the same keys. docs/FIDELITY.md is the spec.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors import SafetensorError, safe_open

from logit_lineage.common.atomic import atomic_path, write_text
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.envelope import check_envelope
from logit_lineage.formats.safetensors_file import save_sorted

FORMAT = "logit-lineage.dense-dump"
FORMAT_VERSION = 1
SUMMARY_SUFFIX = ".json.gz"
LOGITS_SUFFIX = ".safetensors"
METADATA_SUFFIX = ".metadata.json"
BASE_FIELDS = ("key", "sample_idx", "entry_idx", "example_idx", "position")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ST_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def entry_key(sample_idx: int, entry_idx: int) -> str:
    return f"sample_{int(sample_idx)}_entry_{int(entry_idx)}"


def dump_paths(summary_path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(summary, safetensors, metadata) paths of the dump whose summary is given."""
    summary_path = Path(summary_path)
    if not summary_path.name.endswith(SUMMARY_SUFFIX):
        raise LineageError(f"a dense dump summary must end with '{SUMMARY_SUFFIX}'", path=summary_path)
    stem = summary_path.name[: -len(SUMMARY_SUFFIX)]
    return summary_path, summary_path.with_name(stem + LOGITS_SUFFIX), summary_path.with_name(stem + METADATA_SUFFIX)


@dataclass
class DenseEntry:
    """One stored prediction: where it is, what the caller said about it, its logits."""

    sample_idx: int
    example_idx: int
    position: int
    logits: torch.Tensor | None = None  # [vocab]; None when only metadata was loaded
    fields: dict = field(default_factory=dict)
    entry_idx: int | None = None  # assigned by the writer: order within the sample
    key: str | None = None

    @property
    def meta(self) -> dict:
        """Flat metadata, as stored in the metadata JSON."""
        return {
            "key": self.key,
            "sample_idx": self.sample_idx,
            "entry_idx": self.entry_idx,
            "example_idx": self.example_idx,
            "position": self.position,
            **self.fields,
        }

    def __getitem__(self, name: str):
        """Seed-style access: entry['logits'], entry['position'], entry['horizon'], ..."""
        if name == "logits":
            return self.logits
        meta = self.meta
        if name not in meta:
            raise KeyError(name)
        return meta[name]


def _scalar(value, where: str):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise LineageError(f"{where}: metadata values must be JSON scalars, got {type(value).__name__}")


def write_dense_dump(summary_path: str | os.PathLike, entries: Iterable[DenseEntry], *, dtype: str = "float32",
                     info: dict | None = None) -> list[DenseEntry]:
    """Write a dump; assigns entry_idx (order within each sample) and keys. Returns the entries."""
    summary_path, logits_path, meta_path = dump_paths(summary_path)
    if dtype not in DTYPES:
        raise LineageError(f"dense dtype '{dtype}' is not one of {sorted(DTYPES)}")
    entries = list(entries)
    per_sample: dict[int, int] = {}
    tensors: dict[str, torch.Tensor] = {}
    metadata: list[dict] = []
    vocab = None
    field_names = None
    for n, e in enumerate(entries):
        where = f"entry {n} (sample {e.sample_idx}, position {e.position})"
        if e.logits is None or e.logits.dim() != 1:
            raise LineageError(f"{where}: logits must be a 1-D tensor [vocab]")
        if vocab is None:
            vocab = int(e.logits.shape[0])
        elif int(e.logits.shape[0]) != vocab:
            raise LineageError(f"{where}: vocab {e.logits.shape[0]} differs from the first entry's {vocab}")
        clash = set(e.fields) & set(BASE_FIELDS)
        if clash:
            raise LineageError(f"{where}: caller fields {sorted(clash)} clash with the dump's own fields")
        names = sorted(e.fields)
        if field_names is None:
            field_names = names
        elif names != field_names:
            raise LineageError(f"{where}: fields {names} differ from the first entry's {field_names}")
        e.entry_idx = per_sample.get(e.sample_idx, 0)
        per_sample[e.sample_idx] = e.entry_idx + 1
        e.key = entry_key(e.sample_idx, e.entry_idx)
        e.sample_idx, e.example_idx, e.position = int(e.sample_idx), int(e.example_idx), int(e.position)
        e.fields = {k: _scalar(v, where) for k, v in e.fields.items()}
        tensors[e.key] = e.logits.detach().to("cpu", DTYPES[dtype]).contiguous()
        metadata.append(e.meta)
    save_sorted(tensors, logits_path, metadata={"logit_lineage.format": FORMAT,
                                                "logit_lineage.format_version": str(FORMAT_VERSION)})
    write_text(meta_path, json.dumps(metadata, indent=1) + "\n")
    summary = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "num_entries": len(metadata),
        "num_samples": len(per_sample),
        "vocab_size": vocab,
        "dtype": dtype,
        "logits_file": logits_path.name,
        "logits_bytes": logits_path.stat().st_size,
        "metadata_file": meta_path.name,
        "fields": field_names or [],
        "info": info or {},
    }
    with atomic_path(summary_path) as tmp:
        # No file name and a zero time in the gzip header: same content, same bytes.
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
            fh.write(json.dumps(summary, indent=1, sort_keys=True).encode())
    return entries


def read_summary(summary_path: str | os.PathLike) -> dict:
    """The checked summary of a dump."""
    summary_path = dump_paths(summary_path)[0]
    try:
        with gzip.open(summary_path, "rt") as fh:
            summary = json.load(fh)
    except FileNotFoundError:
        raise LineageError("dense dump summary does not exist", path=summary_path) from None
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LineageError(f"truncated or corrupt gzipped JSON summary ({exc})", path=summary_path) from None
    check_envelope(summary, path=summary_path, format=FORMAT, version=FORMAT_VERSION, where="summary",
                   what="dense dump summary")
    missing = [k for k in ("num_entries", "vocab_size", "dtype", "logits_file", "logits_bytes", "metadata_file",
                           "fields") if k not in summary]
    if missing:
        raise LineageError(f"summary lacks keys {missing}", path=summary_path)
    return summary


class DenseDump:
    """A checked dump: metadata in memory, tensors read on demand."""

    def __init__(self, summary_path: str | os.PathLike):
        self.summary_path = Path(summary_path)
        self.summary = read_summary(self.summary_path)
        folder = self.summary_path.parent
        self.logits_path = folder / self.summary["logits_file"]
        self.metadata_path = folder / self.summary["metadata_file"]
        self.vocab_size = int(self.summary["vocab_size"]) if self.summary["vocab_size"] is not None else None
        self.dtype = self.summary["dtype"]
        self.metadata = self._read_metadata()
        self._check_logits_file()
        self._by_key = {m["key"]: m for m in self.metadata}

    def _read_metadata(self) -> list[dict]:
        path = self.metadata_path
        try:
            metadata = json.loads(path.read_text())
        except FileNotFoundError:
            raise LineageError("metadata JSON named by the summary does not exist", path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LineageError(f"truncated or corrupt metadata JSON ({exc})", path=path) from None
        if not isinstance(metadata, list):
            raise LineageError("metadata JSON must be an array of objects, one per key", path=path)
        if len(metadata) != self.summary["num_entries"]:
            raise LineageError(
                f"{len(metadata)} metadata objects, the summary says {self.summary['num_entries']} entries", path=path)
        required = BASE_FIELDS + tuple(self.summary["fields"])
        seen = set()
        for n, m in enumerate(metadata):
            if not isinstance(m, dict):
                raise LineageError(f"metadata object {n} is not an object", path=path)
            lacking = [k for k in required if k not in m]
            if lacking:
                raise LineageError(f"metadata object {n} (key {m.get('key')!r}) lacks {lacking}", path=path)
            key = m["key"]
            if key != entry_key(m["sample_idx"], m["entry_idx"]):
                raise LineageError(
                    f"metadata object {n}: key {key!r} does not match sample_idx {m['sample_idx']}, "
                    f"entry_idx {m['entry_idx']}", path=path)
            if key in seen:
                raise LineageError(f"metadata key {key!r} appears twice", path=path)
            seen.add(key)
        return metadata

    def _check_logits_file(self) -> None:
        path = self.logits_path
        if not path.exists():
            raise LineageError("safetensors file named by the summary does not exist", path=path)
        size, expected = path.stat().st_size, int(self.summary["logits_bytes"])
        if size != expected:
            raise LineageError(f"truncated or altered safetensors file: {size} bytes, the summary says {expected}",
                               path=path)
        with self._open() as fh:
            stored = set(fh.keys())
            header = fh.metadata() or {}
            check_envelope(header, path=path, format=FORMAT, version=str(FORMAT_VERSION),
                           format_key="logit_lineage.format", version_key="logit_lineage.format_version",
                           where="safetensors header", what="dense dump logits file")
            listed = {m["key"] for m in self.metadata}
            if stored != listed:
                only_st = sorted(stored - listed)
                only_meta = sorted(listed - stored)
                raise LineageError(
                    f"metadata keys and safetensors keys differ: only in safetensors {only_st[:3]}"
                    f"{'…' if len(only_st) > 3 else ''}, only in {self.metadata_path.name} {only_meta[:3]}"
                    f"{'…' if len(only_meta) > 3 else ''}", path=path)
            for key in stored:
                sl = fh.get_slice(key)
                dtype, shape = _ST_DTYPES.get(sl.get_dtype(), sl.get_dtype()), sl.get_shape()
                if dtype != self.dtype or list(shape) != [self.vocab_size]:
                    raise LineageError(
                        f"tensor {key!r} is {dtype} {shape}, the summary says {self.dtype} [{self.vocab_size}]",
                        path=path)

    def _open(self):
        try:
            return safe_open(str(self.logits_path), framework="pt")
        except SafetensorError as exc:
            raise LineageError(f"truncated or corrupt safetensors file ({exc})", path=self.logits_path) from None

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def keys(self) -> list[str]:
        return [m["key"] for m in self.metadata]

    def entry_meta(self, key: str) -> dict:
        try:
            return self._by_key[key]
        except KeyError:
            raise LineageError(f"no entry with key {key!r}", path=self.metadata_path) from None

    def select(self, **where) -> list[str]:
        """Keys whose metadata equals every given value (e.g. sample_idx=5)."""
        return [m["key"] for m in self.metadata if all(m.get(k) == v for k, v in where.items())]

    def iter_entries(self, keys: Iterable[str] | None = None, *, with_logits: bool = True) -> Iterator[DenseEntry]:
        """Entries in metadata order (or in `keys` order); only their tensors are read."""
        keys = self.keys if keys is None else list(keys)
        metas = [self.entry_meta(k) for k in keys]
        if not with_logits:
            for m in metas:
                yield _entry(m, None)
            return
        with self._open() as fh:
            for m in metas:
                try:
                    tensor = fh.get_tensor(m["key"])
                except SafetensorError as exc:
                    raise LineageError(f"cannot read tensor {m['key']!r} ({exc})", path=self.logits_path) from None
                yield _entry(m, tensor)

    def load(self, keys: Iterable[str] | None = None, *, with_logits: bool = True) -> list[DenseEntry]:
        return list(self.iter_entries(keys, with_logits=with_logits))


def _entry(meta: dict, tensor) -> DenseEntry:
    fields = {k: v for k, v in meta.items() if k not in BASE_FIELDS}
    return DenseEntry(sample_idx=meta["sample_idx"], example_idx=meta["example_idx"], position=meta["position"],
                      logits=tensor, fields=fields, entry_idx=meta["entry_idx"], key=meta["key"])


def load_dense_dump(summary_path: str | os.PathLike, *, sample_idx: int | None = None) -> list[DenseEntry]:
    """All entries with tensors (the original dense-dump tool's load_logits_data), or one sample's only."""
    dump = DenseDump(summary_path)
    keys = None if sample_idx is None else dump.select(sample_idx=sample_idx)
    return dump.load(keys)
