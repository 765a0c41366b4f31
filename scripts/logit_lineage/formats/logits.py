"""The compressed-logits parquet format (one row per example), version 2.

Columns follow the seed's schema (index … logsumexp) plus what version 2 adds:
`sampled_counts`, `sampled_threshold` (Gumbel-top-k threshold κ, for unbiased
tail weights), `positions` (sequence position t of each stored token) and
`token_ids` (the token at t). Row j of an example holds the teacher's
distribution *for* token_ids[j], i.e. computed from the prefix ending at t−1.
The key-value metadata carries `logit_lineage.format_version` and
`logit_lineage.params` (JSON: vocab_size, index_high_bits, top_p, …).
docs/FORMAT.md is the spec; readers refuse any other schema or version.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from logit_lineage.common.atomic import atomic_path
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.envelope import check_envelope
from logit_lineage.formats.indices import high_bits_for_vocab, pack_indices, unpack_indices
from logit_lineage.formats.quantize import dequantize_rows, quantize_rows

FORMAT_VERSION = 2
META_VERSION = b"logit_lineage.format_version"
META_PARAMS = b"logit_lineage.params"
REQUIRED_PARAMS = ("vocab_size", "index_high_bits", "top_p", "top_p_max_elements", "sampled_n", "seed")

SCHEMA = pa.schema(
    [
        ("index", pa.int32()),
        ("num_tokens", pa.int32()),
        ("top_indices_low", pa.list_(pa.uint16())),
        ("top_indices_high", pa.binary()),
        ("top_logits_quantized", pa.list_(pa.uint16())),
        ("top_counts", pa.list_(pa.uint8())),
        ("top_min", pa.list_(pa.float32())),
        ("top_max", pa.list_(pa.float32())),
        ("sampled_indices_low", pa.list_(pa.uint16())),
        ("sampled_indices_high", pa.binary()),
        ("sampled_logits_quantized", pa.list_(pa.uint16())),
        ("sampled_min", pa.list_(pa.float32())),
        ("sampled_max", pa.list_(pa.float32())),
        ("logsumexp", pa.list_(pa.float64())),
        ("sampled_counts", pa.list_(pa.uint8())),
        ("sampled_threshold", pa.list_(pa.float64())),
        ("positions", pa.list_(pa.int32())),
        ("token_ids", pa.list_(pa.uint32())),
    ]
)


@dataclass
class ExampleRecord:
    """One example's kept tokens before encoding (raw float32 logits)."""

    index: int
    positions: np.ndarray  # int [T]
    token_ids: np.ndarray  # int [T]
    top_counts: np.ndarray  # int [T]
    top_ids: np.ndarray  # int [sum(top_counts)]
    top_logits: np.ndarray  # float32 [sum(top_counts)]
    sampled_counts: np.ndarray  # int [T]
    sampled_ids: np.ndarray  # int [sum(sampled_counts)]
    sampled_logits: np.ndarray  # float32 [sum(sampled_counts)]
    logsumexp: np.ndarray  # float64 [T]
    threshold: np.ndarray  # float64 [T]; -inf when the whole tail was kept

    @property
    def num_tokens(self) -> int:
        return int(len(self.positions))


def _list(values: list[np.ndarray], dtype: pa.DataType, np_dtype) -> pa.ListArray:
    lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(v, dtype=np_dtype) for v in values]) if values else np.zeros(0, np_dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=dtype))


def build_table(records: list[ExampleRecord], vocab_size: int) -> pa.Table:
    """Encode records (quantize, pack ids) into a table of SCHEMA."""
    high_bits = high_bits_for_vocab(vocab_size)
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for rec in records:
        for ids in (rec.top_ids, rec.sampled_ids, rec.token_ids):
            if len(ids) and int(np.max(ids)) >= vocab_size:
                raise LineageError(
                    f"example {rec.index}: token id {int(np.max(ids))} ≥ vocab_size {vocab_size}"
                )
        t_low, t_high = pack_indices(rec.top_ids, high_bits)
        s_low, s_high = pack_indices(rec.sampled_ids, high_bits)
        t_q, t_min, t_max = quantize_rows(rec.top_logits, rec.top_counts)
        s_q, s_min, s_max = quantize_rows(rec.sampled_logits, rec.sampled_counts)
        cols["index"].append(rec.index)
        cols["num_tokens"].append(rec.num_tokens)
        cols["top_indices_low"].append(t_low)
        cols["top_indices_high"].append(t_high)
        cols["top_logits_quantized"].append(t_q)
        cols["top_counts"].append(rec.top_counts)
        cols["top_min"].append(t_min)
        cols["top_max"].append(t_max)
        cols["sampled_indices_low"].append(s_low)
        cols["sampled_indices_high"].append(s_high)
        cols["sampled_logits_quantized"].append(s_q)
        cols["sampled_min"].append(s_min)
        cols["sampled_max"].append(s_max)
        cols["logsumexp"].append(rec.logsumexp)
        cols["sampled_counts"].append(rec.sampled_counts)
        cols["sampled_threshold"].append(rec.threshold)
        cols["positions"].append(rec.positions)
        cols["token_ids"].append(rec.token_ids)
    arrays = []
    for field in SCHEMA:
        values = cols[field.name]
        if pa.types.is_list(field.type):
            np_dtype = field.type.value_type.to_pandas_dtype()
            arrays.append(_list(values, field.type.value_type, np_dtype))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _metadata(params: dict) -> dict[bytes, bytes]:
    missing = [k for k in REQUIRED_PARAMS if k not in params]
    if missing:
        raise LineageError(f"extraction params lack {missing}")
    return {
        META_VERSION: str(FORMAT_VERSION).encode(),
        META_PARAMS: json.dumps(params, sort_keys=True).encode(),
    }


# Parquet stores uint16 as 32-bit integers. Split into byte streams (and without
# dictionary encoding) zstd drops the zero high bytes: ~2 bytes per value at any file
# size, where dictionary encoding costs ~3.5 in a small file (docs/BENCHMARKS.md).
SPLIT_COLUMNS = [f"{f.name}.list.element" for f in SCHEMA if pa.types.is_list(f.type)]


def write_logits_parquet(path: str | Path, table: pa.Table, params: dict) -> None:
    """Write atomically, with the format version and parameters in the metadata."""
    table = table.replace_schema_metadata(_metadata(params))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=3, use_dictionary=False,
                       use_byte_stream_split=SPLIT_COLUMNS)


def _check_metadata(path: str | Path, meta: dict | None) -> tuple[int, dict]:
    meta = meta or {}
    # The file names itself by its version key alone; keys and values are bytes.
    header = {META_VERSION.decode(): meta[META_VERSION].decode(errors="replace")} if META_VERSION in meta else {}
    version = int(check_envelope(header, path=path, version=str(FORMAT_VERSION), version_key=META_VERSION.decode(),
                                 where="parquet metadata", what="logit-lineage logits file"))
    try:
        params = json.loads(meta.get(META_PARAMS, b""))
    except json.JSONDecodeError:
        raise LineageError(f"metadata key '{META_PARAMS.decode()}' is not JSON", path=path) from None
    missing = [k for k in REQUIRED_PARAMS if k not in params]
    if missing:
        raise LineageError(f"metadata params lack keys {missing}", path=path)
    if params["index_high_bits"] != high_bits_for_vocab(params["vocab_size"]):
        raise LineageError(
            f"index_high_bits {params['index_high_bits']} does not match vocab_size {params['vocab_size']}",
            path=path,
        )
    return version, params


def read_metadata(path: str | Path) -> dict:
    """Format version and extraction parameters, checked, without reading the data."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise LineageError(f"not a readable parquet file ({exc})", path=path) from None
    version, params = _check_metadata(path, schema.metadata)
    return {"format_version": version, "params": params}


def read_logits_table(path: str | Path) -> tuple[pa.Table, dict]:
    """Read and check a logits parquet: exact schema and format version."""
    meta = read_metadata(path)
    table = pq.read_table(path)
    actual = table.schema.remove_metadata()
    if not actual.equals(SCHEMA):
        expected = {f.name: str(f.type) for f in SCHEMA}
        got = {f.name: str(f.type) for f in actual}
        diff = sorted(set(expected.items()) ^ set(got.items()))
        raise LineageError(f"schema differs from format {FORMAT_VERSION}: {diff[:4]}", path=path)
    return table, meta["params"]


class _Ragged:
    """A list<> column as (offsets, flat numpy values) for cheap row slicing."""

    def __init__(self, column: pa.ChunkedArray):
        arr = column.combine_chunks()
        self.offsets = arr.offsets.to_numpy()
        self.values = arr.values.to_numpy(zero_copy_only=False)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


@dataclass
class DecodedExample:
    """One example, decoded: ids unpacked, logits dequantized (float64)."""

    index: int
    positions: np.ndarray
    token_ids: np.ndarray
    logsumexp: np.ndarray
    threshold: np.ndarray
    top_counts: np.ndarray
    top_ids: np.ndarray
    top_logits: np.ndarray
    sampled_counts: np.ndarray
    sampled_ids: np.ndarray
    sampled_logits: np.ndarray

    @property
    def num_tokens(self) -> int:
        return int(len(self.positions))

    @cached_property
    def top_offsets(self) -> np.ndarray:
        """Token j's nucleus is top_ids[top_offsets[j]:top_offsets[j + 1]]."""
        return np.concatenate([[0], np.cumsum(self.top_counts, dtype=np.int64)])

    @cached_property
    def sampled_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sampled_counts, dtype=np.int64)])

    def token(self, j: int) -> dict:
        """Token j: nucleus and sampled ids, logits and log-probabilities (offsets are
        computed once per example, so walking every token is linear)."""
        t = self.top_offsets
        s = self.sampled_offsets
        lse = self.logsumexp[j]
        top_logits = self.top_logits[t[j] : t[j + 1]]
        sampled_logits = self.sampled_logits[s[j] : s[j + 1]]
        return {
            "position": int(self.positions[j]),
            "token_id": int(self.token_ids[j]),
            "logsumexp": float(lse),
            "threshold": float(self.threshold[j]),
            "top_ids": self.top_ids[t[j] : t[j + 1]],
            "top_logits": top_logits,
            "top_logprobs": top_logits - lse,
            "sampled_ids": self.sampled_ids[s[j] : s[j + 1]],
            "sampled_logits": sampled_logits,
            "sampled_logprobs": sampled_logits - lse,
        }


class LogitsShard:
    """A checked logits parquet with row-wise decoding."""

    def __init__(self, path: str | Path):
        table, params = read_logits_table(path)
        self._setup(table, params, Path(path))

    @classmethod
    def from_table(cls, table: pa.Table, params: dict, source: str | Path = "<table>") -> "LogitsShard":
        """Rows already in memory (e.g. a batch streamed by `datasets`), with the params of
        the shards they came from; the caller has checked the columns."""
        shard = cls.__new__(cls)
        shard._setup(table, params, Path(source))
        return shard

    def _setup(self, table: pa.Table, params: dict, path: Path) -> None:
        self.path = path
        self.table, self.params = table, params
        self.high_bits = int(self.params["index_high_bits"])
        self._cols = {
            name: _Ragged(self.table.column(name))
            for name in SCHEMA.names
            if pa.types.is_list(SCHEMA.field(name).type)
        }
        self._bin = {
            name: self.table.column(name).combine_chunks()
            for name in ("top_indices_high", "sampled_indices_high")
        }
        self.indices = self.table.column("index").to_numpy()

    def __len__(self) -> int:
        return self.table.num_rows

    def example(self, i: int) -> DecodedExample:
        c = self._cols
        try:
            top_counts = c["top_counts"].row(i).astype(np.int64)
            sampled_counts = c["sampled_counts"].row(i).astype(np.int64)
            top_ids = unpack_indices(
                c["top_indices_low"].row(i), self._bin["top_indices_high"][i].as_py(), self.high_bits
            )
            sampled_ids = unpack_indices(
                c["sampled_indices_low"].row(i), self._bin["sampled_indices_high"][i].as_py(), self.high_bits
            )
            top_logits = dequantize_rows(
                c["top_logits_quantized"].row(i), top_counts, c["top_min"].row(i), c["top_max"].row(i)
            )
            sampled_logits = dequantize_rows(
                c["sampled_logits_quantized"].row(i), sampled_counts, c["sampled_min"].row(i), c["sampled_max"].row(i)
            )
        except (LineageError, ValueError, IndexError) as exc:
            raise LineageError(f"row {i} (example {self.indices[i]}): {exc}", path=self.path) from None
        n = len(c["positions"].row(i))
        if not (len(top_counts) == len(sampled_counts) == n == int(self.table.column("num_tokens")[i].as_py())):
            raise LineageError(f"row {i}: per-token columns disagree in length", path=self.path)
        return DecodedExample(
            index=int(self.indices[i]),
            positions=c["positions"].row(i).astype(np.int64),
            token_ids=c["token_ids"].row(i).astype(np.int64),
            logsumexp=c["logsumexp"].row(i),
            threshold=c["sampled_threshold"].row(i),
            top_counts=top_counts,
            top_ids=top_ids,
            top_logits=top_logits,
            sampled_counts=sampled_counts,
            sampled_ids=sampled_ids,
            sampled_logits=sampled_logits,
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self.example(i)
