"""The student's examples: the distillation chain's shards read through `logit_lineage.kd`, the held-out
split and the batch order.

Every example is one conversation of the shards: its full token ids (the conversation
tokenized with the teacher's chat template, checked against the stored tokens at the
stored positions) and its sparse targets. Every method trains on the same positions, the
stored ones (assistant tokens), whatever its target: the compressed records exist only
there, so a fair comparison trains the dense, top-k and hard-label students there too.
The tokenization and the split are done once (`prepare_examples`, with the tokenizer
fingerprint check of `kd`, written by `examples_file`); each training job reads them back
with the shards' targets (`load_student_data`), checking the ids again against the shards.

Held-out split: examples whose dataset row index is a multiple of `heldout_every` (about
1/heldout_every of the data, spread over every shard and so over every length), at most
`heldout_max_examples` of them, lowest indices first. It depends on the row indices alone,
never on a training seed or a method, so every run holds out the same examples, and no
method trains on them.

Batch order: for seed s, epoch after epoch a permutation of the training examples drawn
from numpy's PCG64(s), cut into `batch_size` examples per step. It depends on the seed and
the number of training examples only, so the four methods of a seed see the same batches.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from logit_lineage.common.errors import LineageError

log = logging.getLogger("logit_lineage")


@dataclass
class StudentData:
    train: list[dict]  # kd dataset items with "input_ids", ascending row index
    heldout: list[dict]
    params: dict  # the shards' extraction params
    vocab_size: int


def load_items(shards: list[Path], tokenizer, conversations, *, column: str = "messages") -> tuple[list[dict], dict]:
    """Every example of the shards as a kd item with its input ids, ascending row index."""
    from logit_lineage.kd.dataset import CompressedLogitsDataset, conversation_input_ids

    first = CompressedLogitsDataset([str(p) for p in shards])  # reads the params only
    fingerprinted = isinstance(first.params.get("fingerprints"), dict)
    if not fingerprinted:
        log.warning("shards carry no tokenizer fingerprint (extracted before fingerprints were recorded): "
                    "only the stored tokens are checked against the tokenized conversations")
    ds = CompressedLogitsDataset(
        [str(p) for p in shards],
        student_tokenizer=tokenizer if fingerprinted else None,
        input_ids_fn=conversation_input_ids(tokenizer, conversations, column=column),
    )
    items = sorted(ds, key=lambda it: it["index"])
    if not items:
        raise LineageError(f"the shards hold no examples: {', '.join(map(str, shards))}")
    indices = np.array([it["index"] for it in items])
    dup = indices[1:][indices[1:] == indices[:-1]]
    if dup.size:
        raise LineageError(f"example {int(dup[0])} is stored in more than one shard ({', '.join(map(str, shards))})")
    return items, ds.params


def split_heldout(items: list[dict], *, every: int, max_heldout: int,
                  max_train: int | None = None) -> tuple[list[dict], list[dict]]:
    """(train, held-out) by row index; examples with no stored token are left out of both."""
    items = [it for it in items if len(it["positions"])]
    heldout = [it for it in items if it["index"] % every == 0][:max_heldout]
    train = [it for it in items if it["index"] % every != 0]
    if max_train is not None:
        train = train[:max_train]
    if not train:
        raise LineageError(f"no training examples left after holding out every {every}th row")
    if not heldout:
        raise LineageError(f"no held-out example: no row index is a multiple of {every}")
    return train, heldout


def prepare_examples(shards: list[Path], tokenizer, conversations, *, column: str = "messages", every: int,
                     max_heldout: int, max_train: int | None = None) -> tuple[list[dict], list[dict], dict]:
    """(train, held-out, shard params): what `examples_file.write_examples` records."""
    items, params = load_items(shards, tokenizer, conversations, column=column)
    train, heldout = split_heldout(items, every=every, max_heldout=max_heldout, max_train=max_train)
    return train, heldout, params


def load_student_data(examples_path: Path, shards: list[Path]) -> StudentData:
    """The examples file's train and held-out examples with their sparse targets from the shards."""
    from logit_lineage.kd.dataset import CompressedLogitsDataset, checked_input_ids
    from logit_lineage.student.examples_file import read_examples

    listed, meta = read_examples(examples_path)
    ds = CompressedLogitsDataset([str(p) for p in shards])
    if int(ds.params["vocab_size"]) != int(meta.get("vocab_size", -1)):
        raise LineageError(f"vocab size {meta.get('vocab_size')} differs from the shards' {ds.params['vocab_size']}",
                           path=examples_path)
    found = {"train": [], "heldout": []}
    seen: set[int] = set()
    for item in ds:
        index = int(item["index"])
        entry = listed.get(index)
        if entry is None:
            continue
        if index in seen:
            raise LineageError(f"example {index} is in more than one of the {len(shards)} shards given "
                               "(the same shard listed twice?)", path=examples_path)
        seen.add(index)
        split, ids = entry
        checked_input_ids(ids, item, examples_path, cause="examples file made from other shards?")
        item["input_ids"] = ids
        found[split].append(item)
    if len(seen) != len(listed):
        missing = sorted(set(listed) - seen)
        raise LineageError(f"{len(missing)} listed example(s) are in none of the shards (first: {missing[0]})",
                           path=examples_path)
    for split in found.values():
        split.sort(key=lambda it: it["index"])
    return StudentData(train=found["train"], heldout=found["heldout"], params=ds.params,
                       vocab_size=int(ds.params["vocab_size"]))


def batch_order(n_examples: int, *, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """[steps, batch_size] positions into the training list: seeded epoch permutations."""
    if n_examples < 1:
        raise LineageError("no training examples to order")
    rng = np.random.Generator(np.random.PCG64(seed))
    need = steps * batch_size
    epochs = [rng.permutation(n_examples) for _ in range(-(-need // n_examples))]
    return np.concatenate(epochs)[:need].reshape(steps, batch_size)


def order_sha256(order: np.ndarray, items: list[dict]) -> str:
    """sha256 of the row indices in batch order: equal hashes, equal batches."""
    rows = np.array([items[i]["index"] for i in order.reshape(-1)], dtype=np.int64)
    return hashlib.sha256(np.ascontiguousarray(order.shape, dtype=np.int64).tobytes() + rows.tobytes()).hexdigest()
