"""A torch dataset over compressed-logits shards (local files or a Hub dataset repo read
with `datasets` streaming) and the collate function that pads a batch.

Each item is one example: its stored positions and tokens, and its sparse targets as flat
numpy arrays (`targets.example_targets`); optionally the full input ids of the conversation
from a user callback (checked against the stored tokens). `collate` pads a list of items
into `SparseTargets` plus padded `input_ids` / `attention_mask`. Nothing of size
[tokens, vocab] exists on the loader side: an example costs O(tokens × (nucleus + samples)).

Rows are decoded by the format's own reader (`formats.logits.LogitsShard`): local files
directly, streamed `datasets` batches (pyarrow tables) through the same row decoder.
"""
from __future__ import annotations

import glob
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from logit_lineage.common.errors import LineageError, row_where
from logit_lineage.common.locations import check_hub_id, is_path_like, require_existing_path
from logit_lineage.formats.codes import ROUNDING_RULE
from logit_lineage.formats.fingerprints import check_student_tokenizer
from logit_lineage.formats.logits import SCHEMAS, SUPPORTED_VERSIONS, LogitsShard, read_metadata, version_of_columns
from logit_lineage.kd.targets import SparseTargets, collate_targets, example_targets

# Params every shard of one dataset must share (the rest, a shard number say, may differ).
SHARED_PARAMS = ("vocab_size", "index_high_bits", "teacher", "fingerprints")


# --- sources -----------------------------------------------------------------------------------


def _local_paths(source) -> list[Path] | None:
    """Shard paths when `source` names local files (a file, a directory, a glob, or a list)."""
    if isinstance(source, (list, tuple)):
        out = []
        for s in source:
            got = _local_paths(s)
            if got is None:
                raise LineageError(f"shard not found: {s}")
            out.extend(got)
        return out
    p = Path(source)
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(p.glob("*.parquet")) or sorted(p.glob("**/*.parquet"))
        if not found:
            raise LineageError("directory holds no .parquet shards", path=p)
        return found
    if any(ch in str(source) for ch in "*?["):
        found = sorted(Path(x) for x in glob.glob(str(source)))
        if not found:
            raise LineageError(f"no shard matches {source}")
        return found
    if is_path_like(str(source)):
        # Not a Hub id either: say the path is missing (relative to where), not "Repo id must be …".
        require_existing_path(str(source), "shards")
    return None


def _shared_params(metas: list[tuple[str, dict]]) -> dict:
    first_src, first = metas[0]
    for src, params in metas[1:]:
        for key in SHARED_PARAMS:
            if params.get(key) != first.get(key):
                raise LineageError(f"{key} = {params.get(key)!r} differs from {first.get(key)!r} in {first_src}",
                                   path=src)
    return first


def hub_card_params(repo_id: str, revision: str | None = None) -> dict:
    """Extraction params of a published dataset repo, from its card (`README.md` header)."""
    from huggingface_hub import hf_hub_download

    from logit_lineage.formats.card_file import CARD_KEY, read_card

    check_hub_id(repo_id, "shards", repo_type="dataset", local_hint=(
        "pass a local folder of shards (an absolute path, or one relative to the working directory)"))
    try:
        card = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types; report one line
        raise LineageError(f"cannot read the dataset card of '{repo_id}': {str(exc).splitlines()[0]}") from None
    meta, _ = read_card(card)
    return card_params(meta.get(CARD_KEY), repo_id)


def card_params(info, repo_id: str) -> dict:
    """The extraction params of a dataset card's `logit_lineage` entry, checked: a format
    version this reader understands, version 3's rounding rule (the files' own metadata
    key, which streamed rows do not carry), params shared by every shard."""
    from logit_lineage.formats.card_file import CARD_KEY

    if not isinstance(info, dict) or "extraction" not in info:
        raise LineageError(f"dataset card of '{repo_id}' has no '{CARD_KEY}.extraction' params "
                           "(not a logit-lineage dataset? pass params=… to read it anyway)")
    version = info.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise LineageError(f"'{repo_id}' holds format version {version}, this reader understands "
                           + " or ".join(map(str, SUPPORTED_VERSIONS)))
    if version == 3 and info.get("rounding") != ROUNDING_RULE:
        raise LineageError(f"'{repo_id}' holds version-3 codes with rounding rule {info.get('rounding')!r}, this "
                           f"reader decodes {ROUNDING_RULE!r} only (publish the shards again)")
    varying = set(info.get("params_varying_per_shard") or ()) & set(SHARED_PARAMS)
    if varying:
        raise LineageError(f"'{repo_id}': shards disagree on {sorted(varying)}")
    return dict(info["extraction"])


# --- decoding streamed tables ---------------------------------------------------------------------


def _check_table(table: pa.Table, source: str) -> None:
    """The streamed table has the columns of its format version (`version_of_columns`) with
    that version's value types (list field names and list/large_list may
    differ after a round trip through `datasets`)."""

    def core(t: pa.DataType):
        return ("list", core(t.value_type)) if pa.types.is_list(t) or pa.types.is_large_list(t) else str(t)

    version = version_of_columns(table.column_names)
    for field in SCHEMAS[version]:
        if field.name not in table.column_names:
            raise LineageError(f"column '{field.name}' missing (columns: {table.column_names})", path=source)
        got = table.schema.field(field.name).type
        if core(got) != core(field.type):
            raise LineageError(f"column '{field.name}' is {got}, format {version} has {field.type}",
                               path=source)


# --- the dataset ---------------------------------------------------------------------------------


class CompressedLogitsDataset(torch.utils.data.IterableDataset):
    """Examples of compressed-logits shards as sparse KD targets.

    source: a shard path, a directory of shards, a glob, a list of paths, or a Hub dataset
    repo id (read with `datasets.load_dataset(source, streaming=True)`; `data_files`,
    `split`, `revision` are passed on). With `data_files` and source "parquet" any files
    `datasets` can stream are read (then give `params`).
    params: the extraction params; by default read from the local shards' metadata (checked
    to agree on SHARED_PARAMS) or the Hub repo's card.
    student_tokenizer: checked against the shards' tokenizer (and, if check_chat_template,
    chat-template) fingerprints here, at construction; a mismatch raises LineageError.
    input_ids_fn: index → the example's full token ids (e.g. `conversation_input_ids`); the
    stored tokens must sit at the stored positions, else LineageError. Without it items
    carry only the stored positions / token ids.
    shuffle: shard order and rows within a shard (local), or a `buffer_size` shuffle buffer
    (streaming), reseeded by `set_epoch`. Work is split over DataLoader workers and over
    `world_size` ranks: by shard when there are enough shards, else by row.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        params: dict | None = None,
        student_tokenizer=None,
        check_chat_template: bool = True,
        input_ids_fn: Callable[[int], Sequence[int]] | None = None,
        data_files=None,
        split: str = "train",
        revision: str | None = None,
        shuffle: bool = False,
        seed: int = 0,
        buffer_size: int = 1000,
        stream_batch_rows: int = 64,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        self.source = source
        self.input_ids_fn = input_ids_fn
        self.data_files, self.split, self.revision = data_files, split, revision
        self.shuffle, self.seed, self.buffer_size = shuffle, seed, buffer_size
        self.stream_batch_rows = stream_batch_rows
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.paths = None if data_files is not None else _local_paths(source)
        if self.paths is not None:
            self.params = params or _shared_params([(str(p), read_metadata(p)["params"]) for p in self.paths])
        elif params is not None:
            self.params = params
        elif str(source) == "parquet":  # local data_files streamed by `datasets`: their own metadata
            files = _local_paths(list(data_files.values()) if isinstance(data_files, dict) else data_files)
            self.params = _shared_params([(str(p), read_metadata(p)["params"]) for p in files])
        else:
            self.params = hub_card_params(str(source), revision)
        where = str(self.paths[0]) if self.paths else str(source)
        if student_tokenizer is not None:
            check_student_tokenizer(self.params, student_tokenizer, source=where,
                                    check_chat_template=check_chat_template)
        self.vocab_size = int(self.params["vocab_size"])

    @property
    def num_examples(self) -> int | None:
        """Rows over all local shards (None when streaming)."""
        if self.paths is None:
            return None
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(p).num_rows for p in self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def collate(self, items: list[dict]) -> dict:
        return collate(items, vocab_size=self.vocab_size)

    # iteration

    def _me(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def __iter__(self) -> Iterator[dict]:
        me, total = self._me()
        rng = random.Random(self.seed * 1_000_003 + self.epoch)  # the same order in every worker
        if self.paths is not None:
            yield from self._iter_local(me, total, rng)
        else:
            yield from self._iter_stream(me, total)

    def _iter_local(self, me: int, total: int, rng: random.Random) -> Iterator[dict]:
        order = list(range(len(self.paths)))
        if self.shuffle:
            rng.shuffle(order)
        by_shard = len(order) >= total
        counter = 0
        for k, s in enumerate(order):
            if by_shard and k % total != me:
                continue
            shard = LogitsShard(self.paths[s])
            rows = list(range(len(shard)))
            if self.shuffle:
                rng.shuffle(rows)
            for i in rows:
                counter += 1
                if not by_shard and (counter - 1) % total != me:
                    continue
                yield self._item(shard.example(i), shard.path)

    def _iter_stream(self, me: int, total: int) -> Iterator[dict]:
        import datasets
        from datasets.distributed import split_dataset_by_node

        try:
            if self.data_files is not None:
                ds = datasets.load_dataset(str(self.source), data_files=self.data_files, split=self.split,
                                           revision=self.revision, streaming=True)
            else:
                ds = datasets.load_dataset(str(self.source), split=self.split, revision=self.revision,
                                           streaming=True)
        except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
            raise LineageError(f"cannot stream '{self.source}': {str(exc).splitlines()[0]}") from None
        if total > 1:
            ds = split_dataset_by_node(ds, rank=me, world_size=total)
        if self.shuffle:
            ds = ds.shuffle(seed=self.seed, buffer_size=self.buffer_size)
            ds.set_epoch(self.epoch)
        where = str(self.source)
        for table in ds.with_format("arrow").iter(batch_size=self.stream_batch_rows):
            _check_table(table, where)
            shard = LogitsShard.from_table(table, self.params, where)
            for i in range(len(shard)):
                yield self._item(shard.example(i), where)

    def _item(self, ex, where) -> dict:
        item = example_targets(ex)
        if self.input_ids_fn is not None:
            item["input_ids"] = checked_input_ids(self.input_ids_fn(item["index"]), item, where)
        return item


def checked_input_ids(ids, item: dict, where,
                      cause: str = "tokenizer or chat template differs from the teacher's") -> np.ndarray:
    """`ids` as int64, refused in one line unless every stored token of `item` sits at its
    stored position in them; `cause` names the likely reason in the message."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    pos, tok = item["positions"], item["token_ids"]
    if pos.size and int(pos.max()) >= ids.size:
        raise LineageError(f"example {item['index']}: {ids.size} input ids, but the shard stores a "
                           f"token at position {int(pos.max())}", path=where)
    bad = np.nonzero(ids[pos] != tok)[0]
    if bad.size:
        j = int(bad[0])
        raise LineageError(f"example {item['index']}: input ids disagree with the stored tokens at {bad.size} of "
                           f"{pos.size} positions (first: position {int(pos[j])} has {int(ids[pos[j]])}, shard "
                           f"stores {int(tok[j])}); {cause}", path=where)
    return ids


def collate(items: list[dict], *, pad_id: int = 0, vocab_size: int | None = None) -> dict:
    """Pad dataset items into {"index": [B], "targets": SparseTargets, and when the items carry
    input ids: "input_ids" [B, L] (right-padded with pad_id), "attention_mask" [B, L]}."""
    out = {"index": torch.tensor([int(it["index"]) for it in items], dtype=torch.int64),
           "targets": collate_targets(items, vocab_size=vocab_size)}
    if items and all("input_ids" in it for it in items):
        lengths = np.array([len(it["input_ids"]) for it in items], dtype=np.int64)
        width = int(lengths.max()) if lengths.size else 0
        ids = np.full((len(items), width), pad_id, dtype=np.int64)
        row = np.repeat(np.arange(len(items)), lengths)
        col = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids[row, col] = np.concatenate([it["input_ids"] for it in items])
        out["input_ids"] = torch.from_numpy(ids)
        out["attention_mask"] = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None]).long()
    return out


def conversation_input_ids(tokenizer, conversations, *, column: str = "messages") -> Callable[[int], np.ndarray]:
    """An `input_ids_fn`: row `index` of a conversation dataset (a `datasets.Dataset`, or a
    local/Hub dataset name for `teacher.data.load_conversations`) tokenized with the chat
    template exactly as the extraction did (`teacher.chat.tokenize_conversation`)."""
    from logit_lineage.teacher.chat import MaskOptions, check_messages, tokenize_conversation

    if isinstance(conversations, (str, Path)):
        from logit_lineage.teacher.data import load_conversations

        conversations = load_conversations(str(conversations), column=column)

    def fn(index: int) -> np.ndarray:
        where = row_where("conversations", index)
        ids, _ = tokenize_conversation(tokenizer, check_messages(conversations[int(index)][column], where),
                                       MaskOptions(), where)
        return ids

    return fn


__all__ = ["CompressedLogitsDataset", "SparseTargets", "collate", "conversation_input_ids",
           "hub_card_params"]
