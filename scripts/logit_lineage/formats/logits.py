"""The compressed-logits parquet format (one row per example), versions 2 and 3.

Version 2 (SCHEMA; what extraction writes unless told otherwise) has the original
compression code's columns (index … logsumexp: packed ids, uint16 logits quantized per token
between float32 minima and maxima, float64 logsumexp) plus `sampled_counts`,
`sampled_threshold` (Gumbel-top-k threshold κ, for unbiased tail weights), `positions`
(sequence position t of each stored token) and `token_ids` (the token at t). Version 3
(SCHEMA_V3, opt-in) holds the same records in fewer bytes: 8-bit log-probability codes on a
fixed grid (nucleus step 1/16, tail step 1/8 nat) with a subtractive dither keyed by (seed,
example index, position, part, id) (`formats.codes`), delta-coded within a token, tail
samples stored by code then id, logsumexp and κ as float32, no per-token minima or maxima.
In both, row j of an example holds the teacher's distribution *for* token_ids[j], i.e.
computed from the prefix ending at t−1, and both decode to the same `DecodedExample`.
The key-value metadata carries `logit_lineage.format_version` (2 or 3),
`logit_lineage.params` (JSON: vocab_size, index_high_bits, top_p, …, seed) and, in version 3
only, `logit_lineage.rounding` (the rule that turns codes into values).
docs/FORMAT.md is the spec; readers refuse any other schema, version or rounding rule.
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
from logit_lineage.formats import codes as v3codes
from logit_lineage.formats.envelope import check_envelope
from logit_lineage.formats.indices import high_bits_for_vocab, pack_indices, unpack_indices
from logit_lineage.formats.params import CompressionParams
from logit_lineage.formats.quantize import dequantize_rows, quantize_rows

FORMAT_VERSION = 2  # what extraction writes unless told otherwise
SUPPORTED_VERSIONS = (2, 3)
META_VERSION = b"logit_lineage.format_version"
META_PARAMS = b"logit_lineage.params"
META_ROUNDING = b"logit_lineage.rounding"  # version 3: the rule that turns codes into values
REQUIRED_PARAMS = ("vocab_size", "index_high_bits", *CompressionParams.METADATA_KEYS, "seed")

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

SCHEMA_V3 = pa.schema(
    [
        ("index", pa.int32()),
        ("num_tokens", pa.int32()),
        ("positions", pa.list_(pa.int32())),
        ("token_ids", pa.list_(pa.uint32())),
        ("logsumexp", pa.list_(pa.float32())),
        # κ, a log-probability as in version 2; −inf where the whole tail is stored (weights = probabilities)
        ("sampled_threshold", pa.list_(pa.float32())),
        ("top_counts", pa.list_(pa.uint8())),
        ("top_indices_low", pa.list_(pa.uint16())),
        ("top_indices_high", pa.binary()),
        ("top_codes", pa.list_(pa.uint8())),  # delta-coded within a token, rank order
        ("sampled_counts", pa.list_(pa.uint8())),
        ("sampled_indices_low", pa.list_(pa.uint16())),
        ("sampled_indices_high", pa.binary()),
        ("sampled_codes", pa.list_(pa.uint8())),  # delta-coded within a token, by code then id
    ]
)
SCHEMAS = {2: SCHEMA, 3: SCHEMA_V3}


def version_of_columns(names) -> int:
    """The format version a table with these column names claims: a `top_codes` column is
    version 3's alone (its columns and types are then checked against SCHEMAS[version])."""
    return 3 if "top_codes" in names else 2


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


ROW_FIELDS = ("top_counts", "top_ids", "top_logits", "sampled_counts", "sampled_ids", "sampled_logits",
              "logsumexp", "threshold")


def records_from_rows(rows: dict[str, np.ndarray], indices, positions, token_ids) -> list[ExampleRecord]:
    """Per-example records from per-token compressed rows: `rows` holds the fields of
    `teacher.compress.Compressed` as numpy arrays (`ROW_FIELDS`), one row per kept token,
    the examples' tokens one example after the other; `indices`, `positions` and
    `token_ids` give, per example, its index, its kept positions t and the tokens there
    (their lengths split the rows). Padding of the [rows, cap] / [rows, k] columns beyond
    each row's count is dropped."""
    lengths = np.array([len(p) for p in positions], dtype=np.int64)
    if int(lengths.sum()) != len(rows["logsumexp"]):
        raise ValueError(f"{int(lengths.sum())} kept positions for {len(rows['logsumexp'])} compressed rows")
    tc, sc = np.asarray(rows["top_counts"], np.int64), np.asarray(rows["sampled_counts"], np.int64)
    top_keep = np.arange(np.shape(rows["top_ids"])[1])[None, :] < tc[:, None]
    s_keep = np.arange(np.shape(rows["sampled_ids"])[1])[None, :] < sc[:, None]
    flat = {"top_ids": rows["top_ids"][top_keep], "top_logits": rows["top_logits"][top_keep],
            "sampled_ids": rows["sampled_ids"][s_keep], "sampled_logits": rows["sampled_logits"][s_keep]}
    tok = np.concatenate([[0], np.cumsum(lengths)])
    top_off = np.concatenate([[0], np.cumsum(tc)])[tok]
    s_off = np.concatenate([[0], np.cumsum(sc)])[tok]
    records = []
    for j, index in enumerate(indices):
        a, b = tok[j], tok[j + 1]
        ta, tb, sa, sb = top_off[j], top_off[j + 1], s_off[j], s_off[j + 1]
        records.append(ExampleRecord(
            index=int(index),
            positions=np.asarray(positions[j]).astype(np.int32),
            token_ids=np.asarray(token_ids[j]),
            top_counts=tc[a:b],
            top_ids=flat["top_ids"][ta:tb],
            top_logits=flat["top_logits"][ta:tb],
            sampled_counts=sc[a:b],
            sampled_ids=flat["sampled_ids"][sa:sb],
            sampled_logits=flat["sampled_logits"][sa:sb],
            logsumexp=rows["logsumexp"][a:b],
            threshold=rows["threshold"][a:b],
        ))
    return records


def _list(values: list[np.ndarray], dtype: pa.DataType, np_dtype) -> pa.ListArray:
    lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(v, dtype=np_dtype) for v in values]) if values else np.zeros(0, np_dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=dtype))


def _check_ids(rec: ExampleRecord, vocab_size: int) -> None:
    for ids in (rec.top_ids, rec.sampled_ids, rec.token_ids):
        if len(ids) and int(np.max(ids)) >= vocab_size:
            raise LineageError(f"example {rec.index}: token id {int(np.max(ids))} ≥ vocab_size {vocab_size}")


def _columns(cols: dict[str, list], schema: pa.Schema) -> pa.Table:
    arrays = []
    for field in schema:
        values = cols[field.name]
        if pa.types.is_list(field.type):
            np_dtype = field.type.value_type.to_pandas_dtype()
            arrays.append(_list(values, field.type.value_type, np_dtype))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def build_table(records: list[ExampleRecord], vocab_size: int, *, version: int = FORMAT_VERSION,
                seed: int = 0) -> pa.Table:
    """Encode records into a table of format `version` (2: quantize, pack ids; 3: also
    the subtractive dither keyed by (`seed`, example index, position, id))."""
    if version == 3:
        return _build_table_v3(records, vocab_size, seed)
    if version != 2:
        raise LineageError(f"format version {version} cannot be written; this writer knows {SUPPORTED_VERSIONS}")
    high_bits = high_bits_for_vocab(vocab_size)
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for rec in records:
        _check_ids(rec, vocab_size)
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
    return _columns(cols, SCHEMA)


def encode_v3(rec: ExampleRecord, seed: int) -> dict[str, np.ndarray]:
    """One record's version-3 values: float32 logsumexp and threshold, nucleus codes
    (rank order), tail codes and ids reordered by (code, id); codes not yet delta-coded.
    Each value's dither is keyed by (seed, example index, position, part, id), so the reader
    pairs it with its code whatever order the codes are stored in."""
    lse = np.asarray(rec.logsumexp, dtype=np.float64)
    positions = np.asarray(rec.positions, dtype=np.int64)
    top_counts = np.asarray(rec.top_counts, dtype=np.int64)
    s_counts = np.asarray(rec.sampled_counts, dtype=np.int64)
    kappa = np.asarray(rec.threshold, dtype=np.float64)  # a log-probability already; −inf stays
    kappa32 = kappa.astype(np.float32)
    top_ids = np.asarray(rec.top_ids, dtype=np.int64)
    s_ids = np.asarray(rec.sampled_ids, dtype=np.int64)
    u_top = v3codes.dither(seed, rec.index, np.repeat(positions, top_counts), top_ids, v3codes.PART_NUCLEUS)
    u_s = v3codes.dither(seed, rec.index, np.repeat(positions, s_counts), s_ids, v3codes.PART_TAIL)
    top_lp = np.asarray(rec.top_logits, dtype=np.float64) - np.repeat(lse, top_counts)
    top_codes = v3codes.encode(np.minimum(top_lp, 0.0), u_top, v3codes.NUCLEUS_STEP)
    s_lp = np.asarray(rec.sampled_logits, dtype=np.float64) - np.repeat(lse, s_counts)
    s_codes = v3codes.encode(np.minimum(s_lp, 0.0), u_s, v3codes.TAIL_STEP)
    token_of = np.repeat(np.arange(s_counts.size), s_counts)
    order = np.lexsort((s_ids, s_codes, token_of))  # token, then code, then id
    return {"logsumexp": lse.astype(np.float32), "threshold": kappa32, "top_codes": top_codes,
            "sampled_codes": s_codes[order], "sampled_ids": s_ids[order]}


def _build_table_v3(records: list[ExampleRecord], vocab_size: int, seed: int) -> pa.Table:
    high_bits = high_bits_for_vocab(vocab_size)
    cols: dict[str, list] = {name: [] for name in SCHEMA_V3.names}
    for rec in records:
        _check_ids(rec, vocab_size)
        enc = encode_v3(rec, seed)
        t_low, t_high = pack_indices(rec.top_ids, high_bits)
        s_low, s_high = pack_indices(enc["sampled_ids"], high_bits)
        cols["index"].append(rec.index)
        cols["num_tokens"].append(rec.num_tokens)
        cols["positions"].append(rec.positions)
        cols["token_ids"].append(rec.token_ids)
        cols["logsumexp"].append(enc["logsumexp"])
        cols["sampled_threshold"].append(enc["threshold"])
        cols["top_counts"].append(rec.top_counts)
        cols["top_indices_low"].append(t_low)
        cols["top_indices_high"].append(t_high)
        cols["top_codes"].append(v3codes.delta_encode(enc["top_codes"], rec.top_counts))
        cols["sampled_counts"].append(rec.sampled_counts)
        cols["sampled_indices_low"].append(s_low)
        cols["sampled_indices_high"].append(s_high)
        cols["sampled_codes"].append(v3codes.delta_encode(enc["sampled_codes"], rec.sampled_counts))
    return _columns(cols, SCHEMA_V3)


def table_version(table: pa.Table) -> int:
    """The format version whose schema the table has (2 or 3): the version its columns
    claim (`version_of_columns`), checked exactly against that version's schema."""
    version = version_of_columns(table.column_names)
    if table.schema.remove_metadata().equals(SCHEMAS[version]):
        return version
    raise LineageError(f"table columns {table.column_names} are not those of format version 2 or 3")


def _metadata(params: dict, version: int) -> dict[bytes, bytes]:
    missing = [k for k in REQUIRED_PARAMS if k not in params]
    if missing:
        raise LineageError(f"extraction params lack {missing}")
    meta = {
        META_VERSION: str(version).encode(),
        META_PARAMS: json.dumps(params, sort_keys=True).encode(),
    }
    if version == 3:
        meta[META_ROUNDING] = v3codes.ROUNDING_RULE.encode()
    return meta


# Parquet stores uint16 as 32-bit integers. Split into byte streams (and without
# dictionary encoding) zstd drops the zero high bytes: ~2 bytes per value at any file
# size, where dictionary encoding costs ~3.5 in a small file (docs/BENCHMARKS.md).
# Version 3's uint8 codes are stored as 32-bit integers too: split, zstd keeps ~1 byte.
SPLIT_COLUMNS = {v: [f"{f.name}.list.element" for f in schema if pa.types.is_list(f.type)]
                 for v, schema in SCHEMAS.items()}


def write_logits_parquet(path: str | Path, table: pa.Table, params: dict) -> None:
    """Write atomically, with the format version (from the table's columns) and the
    parameters in the metadata."""
    version = table_version(table)
    table = table.replace_schema_metadata(_metadata(params, version))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=3, use_dictionary=False,
                       use_byte_stream_split=SPLIT_COLUMNS[version])


def _check_metadata(path: str | Path, meta: dict | None) -> tuple[int, dict]:
    meta = meta or {}
    # The file names itself by its version key alone; keys and values are bytes.
    header = {META_VERSION.decode(): meta[META_VERSION].decode(errors="replace")} if META_VERSION in meta else {}
    found = header.get(META_VERSION.decode())
    known = found if found in {str(v) for v in SUPPORTED_VERSIONS} else " or ".join(map(str, SUPPORTED_VERSIONS))
    version = int(check_envelope(header, path=path, version=known, version_key=META_VERSION.decode(),
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
    if version == 3:
        rule = meta.get(META_ROUNDING, b"").decode(errors="replace")
        if rule != v3codes.ROUNDING_RULE:
            raise LineageError(f"version-3 metadata key '{META_ROUNDING.decode()}' is {rule!r}, this reader decodes "
                               f"{v3codes.ROUNDING_RULE!r} only (re-extract the shard)", path=path)
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
    """Read and check a logits parquet: exact schema of its format version (the table's
    columns tell which: `table_version`)."""
    meta = read_metadata(path)
    table = pq.read_table(path)
    version = meta["format_version"]
    actual, schema = table.schema.remove_metadata(), SCHEMAS[version]
    if not actual.equals(schema):
        expected = {f.name: str(f.type) for f in schema}
        got = {f.name: str(f.type) for f in actual}
        diff = sorted(set(expected.items()) ^ set(got.items()))
        raise LineageError(f"schema differs from format {version}: {diff[:4]}", path=path)
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
    """One example, decoded: ids unpacked, logits dequantized (float64). Version 3 gives
    logits as logsumexp + decoded log-probability, so `top_logits − logsumexp` is the code's
    log-probability exactly."""

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
    # (nucleus step, tail step) of version 3's log-probability grid; None: values not on a grid
    grid: tuple[float, float] | None = None

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
        the shards they came from; the caller has checked the columns (`version_of_columns`
        tells the version)."""
        shard = cls.__new__(cls)
        shard._setup(table, params, Path(source))
        return shard

    def _setup(self, table: pa.Table, params: dict, path: Path) -> None:
        self.path = path
        self.table, self.params = table, params
        self.version = version_of_columns(table.column_names)
        schema = SCHEMAS[self.version]
        self.high_bits = int(self.params["index_high_bits"])
        self._cols = {
            name: _Ragged(self.table.column(name))
            for name in schema.names
            if pa.types.is_list(schema.field(name).type)
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
            if self.version == 3:
                logsumexp = c["logsumexp"].row(i).astype(np.float64)
                threshold = c["sampled_threshold"].row(i).astype(np.float64)
                pos = c["positions"].row(i).astype(np.int64)
                seed, index = int(self.params["seed"]), int(self.indices[i])
                u_top = v3codes.dither(seed, index, np.repeat(pos, top_counts), top_ids, v3codes.PART_NUCLEUS)
                u_s = v3codes.dither(seed, index, np.repeat(pos, sampled_counts), sampled_ids, v3codes.PART_TAIL)
                top_logits = np.repeat(logsumexp, top_counts) + v3codes.decode(
                    v3codes.delta_decode(c["top_codes"].row(i), top_counts), u_top, v3codes.NUCLEUS_STEP)
                sampled_logits = np.repeat(logsumexp, sampled_counts) + v3codes.decode(
                    v3codes.delta_decode(c["sampled_codes"].row(i), sampled_counts), u_s, v3codes.TAIL_STEP)
            else:
                logsumexp = c["logsumexp"].row(i)
                threshold = c["sampled_threshold"].row(i)
                top_logits = dequantize_rows(
                    c["top_logits_quantized"].row(i), top_counts, c["top_min"].row(i), c["top_max"].row(i)
                )
                sampled_logits = dequantize_rows(
                    c["sampled_logits_quantized"].row(i), sampled_counts, c["sampled_min"].row(i),
                    c["sampled_max"].row(i)
                )
            if len(top_ids) != int(top_counts.sum()) or len(sampled_ids) != int(sampled_counts.sum()):
                raise LineageError("ids and counts disagree in length")
        except (LineageError, ValueError, IndexError) as exc:
            raise LineageError(f"row {i} (example {self.indices[i]}): {exc}", path=self.path) from None
        n = len(c["positions"].row(i))
        if not (len(top_counts) == len(sampled_counts) == n == int(self.table.column("num_tokens")[i].as_py())):
            raise LineageError(f"row {i}: per-token columns disagree in length", path=self.path)
        return DecodedExample(
            index=int(self.indices[i]),
            positions=c["positions"].row(i).astype(np.int64),
            token_ids=c["token_ids"].row(i).astype(np.int64),
            logsumexp=logsumexp,
            threshold=threshold,
            top_counts=top_counts,
            top_ids=top_ids,
            top_logits=top_logits,
            sampled_counts=sampled_counts,
            sampled_ids=sampled_ids,
            sampled_logits=sampled_logits,
            grid=(v3codes.NUCLEUS_STEP, v3codes.TAIL_STEP) if self.version == 3 else None,
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self.example(i)


def storage(paths) -> dict:
    """What shards cost on disk: {"bytes", "tokens", "bytes_per_token", "format_version",
    "top_p", "top_p_max_elements", "sampled_n"} (one version and one set of compression
    params across the shards, else an error naming the odd one)."""
    total, tokens, first = 0, 0, None
    for path in paths:
        this = CompressionParams.from_metadata(read_metadata(path)).as_dict()
        if first is None:
            first = (this, path)
        elif this != first[0]:
            raise LineageError(f"compression {this} differs from {first[1]}'s {first[0]}", path=path)
        total += Path(path).stat().st_size
        tokens += int(pq.read_table(path, columns=["num_tokens"]).column(0).to_numpy().sum())
    if first is None:
        raise LineageError("no shards given")
    return {"bytes": total, "tokens": tokens, "bytes_per_token": total / tokens if tokens else None, **first[0]}


def example_record(ex: DecodedExample) -> ExampleRecord:
    """A decoded example back as a record (logits as decoded, float32) for re-encoding."""
    return ExampleRecord(
        index=ex.index, positions=ex.positions.astype(np.int32), token_ids=ex.token_ids,
        top_counts=ex.top_counts, top_ids=ex.top_ids, top_logits=ex.top_logits.astype(np.float32),
        sampled_counts=ex.sampled_counts, sampled_ids=ex.sampled_ids,
        sampled_logits=ex.sampled_logits.astype(np.float32), logsumexp=ex.logsumexp, threshold=ex.threshold,
    )


def transcode(source: str | Path, output: str | Path, version: int) -> None:
    """Write a shard's records again in format `version`, without the teacher: the same ids,
    samples and thresholds, values as the source decodes them (a version-2 value carries its
    uint16 rounding, ≤ range/131070, into the version-3 codes). The dither is keyed
    by the source's extraction seed."""
    shard = LogitsShard(source)
    records = [example_record(ex) for ex in shard]
    table = build_table(records, int(shard.params["vocab_size"]), version=version, seed=int(shard.params["seed"]))
    write_logits_parquet(output, table, shard.params)
