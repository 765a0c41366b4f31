"""Tokenizer and chat-template fingerprints, and the check a student runs before training.

The compressed logits index the teacher's vocabulary and sit at positions of the teacher's
chat-template tokenization; a student whose tokenizer maps ids to other strings, or whose
template puts tokens elsewhere, would learn from misaligned targets without any error.
Extraction records `params["fingerprints"] = {"tokenizer": …, "chat_template": …, "dataset": …}`
(sha256 hex) in every shard; `check_student_tokenizer` compares a student's tokenizer with
them and refuses a mismatch in one line.

`tokenizer_fingerprint` hashes what decides the id of a string, and nothing set at runtime:
the vocabulary (token → id, added tokens included), the added/special tokens and their
flags, the bos/eos/unk tokens, and for fast tokenizers the normalizer, pre-tokenizer and
model (merges included) of the backend, as canonical JSON. Padding, truncation, the pad
token and `model_max_length` are left out (training code changes them freely), so the
fingerprint is stable across `save_pretrained` / `from_pretrained`.
"""
from __future__ import annotations

import hashlib
import json

from logit_lineage.common.errors import LineageError

_BACKEND_PARTS = ("normalizer", "pre_tokenizer", "model")
_ROLES = ("bos_token", "eos_token", "unk_token")


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _backend_parts(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return {}
    spec = json.loads(backend.to_str())
    parts = {k: spec.get(k) for k in _BACKEND_PARTS}
    model = dict(parts.get("model") or {})
    if isinstance(model.get("merges"), list):  # "a b" strings or [a, b] pairs, by tokenizers version
        model["merges"] = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    if isinstance(model.get("vocab"), dict):
        model["vocab"] = sorted(model["vocab"].items(), key=lambda kv: (kv[1], kv[0]))
    parts["model"] = model
    return parts


def tokenizer_parts(tokenizer) -> dict:
    """The canonical pieces the fingerprint hashes (useful to diff two tokenizers)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    added_items = sorted(
        (int(i), str(t), bool(getattr(t, "special", False))) for i, t in added.items()
    )
    roles = {}
    for role in _ROLES:
        tok = getattr(tokenizer, role, None)
        roles[role] = None if tok is None else [str(tok), tokenizer.convert_tokens_to_ids(str(tok))]
    return {"vocab": vocab, "added_tokens": added_items, "roles": roles, "backend": _backend_parts(tokenizer)}


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 hex of `tokenizer_parts(tokenizer)`: equal iff the tokenizers map text to the same ids."""
    return hashlib.sha256(_canonical(tokenizer_parts(tokenizer))).hexdigest()


def chat_template_fingerprint(template) -> str | None:
    """sha256 hex of a chat template (a string, a {name: template} mapping, or a tokenizer's
    `chat_template`); None when there is none."""
    if template is not None and not isinstance(template, (str, dict, list)):
        template = getattr(template, "chat_template", None)
    if template is None:
        return None
    text = template if isinstance(template, str) else _canonical(template).decode()
    return hashlib.sha256(text.encode()).hexdigest()


def _short(h: str | None) -> str:
    return "none" if h is None else h[:12]


def check_student_tokenizer(shard_params: dict, tokenizer, *, source: str | None = None,
                            check_chat_template: bool = True) -> None:
    """Raise LineageError (one line, naming `source`) unless the student's tokenizer (and chat
    template, when `check_chat_template`) has the fingerprints recorded in the shard's params."""
    where = source or "shard"
    prints = shard_params.get("fingerprints")
    if not isinstance(prints, dict) or "tokenizer" not in prints:
        raise LineageError(f"{where}: no tokenizer fingerprint in the shard's params (written before "
                           "fingerprints were recorded); cannot check the student tokenizer "
                           "(pass student_tokenizer=None to skip the check)")
    problems = []
    got = tokenizer_fingerprint(tokenizer)
    if got != prints["tokenizer"]:
        size = len(tokenizer.get_vocab())
        teacher_vocab = shard_params.get("vocab_size")
        problems.append(f"tokenizer sha256 {_short(got)}… ≠ teacher's {_short(prints['tokenizer'])}… "
                        f"(student has {size} tokens, teacher logits cover {teacher_vocab}; teacher "
                        f"{shard_params.get('teacher', '?')})")
    if check_chat_template and "chat_template" in prints:
        got_t = chat_template_fingerprint(tokenizer)
        if got_t != prints["chat_template"]:
            problems.append(f"chat template sha256 {_short(got_t)} ≠ teacher's {_short(prints['chat_template'])} "
                            "(stored positions follow the teacher's template)")
    if problems:
        raise LineageError(f"{where}: student tokenizer does not match the teacher's: " + "; ".join(problems))


def dataset_fingerprint(dataset: str, *, split: str | None = None, config: str | None = None,
                        limit: int | None = None) -> str:
    """sha256 hex naming the conversations a shard was made from: of the file's bytes for a
    local file, else of the Hub id with its config and split (plus the row limit, if any)."""
    import os

    h = hashlib.sha256()
    if os.path.isfile(dataset):
        with open(dataset, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(_canonical({"limit": limit}))
    else:
        h.update(_canonical({"hub": dataset, "config": config, "split": split, "limit": limit}))
    return h.hexdigest()


def shard_fingerprints(tokenizer, dataset: str, *, split: str | None = None, config: str | None = None,
                       limit: int | None = None) -> dict:
    """What extraction records as `params["fingerprints"]`: the tokenizer, the chat template
    it applied (its own or the one given) and the dataset."""
    return {"tokenizer": tokenizer_fingerprint(tokenizer), "chat_template": chat_template_fingerprint(tokenizer),
            "dataset": dataset_fingerprint(dataset, split=split, config=config, limit=limit)}
