"""The teacher's tokenizer and chat template, rebuilt from what a shard records.

A student must tokenize exactly as the teacher did: the stored positions index the
teacher's tokens under its chat template. Extraction records two things in every
shard's params (and so in a published repo's card):

- `fingerprints`: sha256 of the tokenizer and of the chat template, to check a tokenizer;
- `teacher_tokenizer`: what rebuilds them: the teacher as configured (a Hub id, a
  `save_pretrained` folder, a `.gguf` file or `pkg:<package>/<file>`), its revision,
  the GGUF file name, the chat template's full text and the transformers version.

`teacher_tokenizer(shard_or_repo)` loads the tokenizer from that source with
`AutoTokenizer.from_pretrained(folder_or_id, gguf_file=…, revision=…)`, sets the
recorded chat template, and checks both against the fingerprints, so what it returns
is the tokenizer the shards were made with or an error says why not.
"""
from __future__ import annotations

from pathlib import Path

from logit_lineage.common.errors import LineageError

RECORD_KEY = "teacher_tokenizer"


def tokenizer_record(teacher: str, revision: str | None, tokenizer) -> dict:
    """The `teacher_tokenizer` params entry extraction writes: enough to rebuild `tokenizer`."""
    import transformers

    from logit_lineage.teacher.source import GGUF_SUFFIX, PKG_PREFIX

    spec = str(teacher)
    gguf = Path(spec.removeprefix(PKG_PREFIX)).name if spec.lower().endswith(GGUF_SUFFIX) else None
    return {
        "teacher": spec,
        "revision": None if gguf else revision,
        "gguf_file": gguf,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "transformers": transformers.__version__,
        "load": ("AutoTokenizer.from_pretrained(<folder of the file>, gguf_file=<gguf_file>)" if gguf
                 else "AutoTokenizer.from_pretrained(<teacher>, revision=<revision>)")
        + "; then tokenizer.chat_template = <chat_template>",
    }


def _shard_params(shard_or_repo, revision: str | None) -> tuple[dict, str, Path | None]:
    """(params, where for errors, first local shard or None) of local shards or a Hub dataset repo."""
    from logit_lineage.formats.logits import read_metadata
    from logit_lineage.kd.dataset import _local_paths, hub_card_params

    paths = _local_paths(shard_or_repo)
    if paths:
        return read_metadata(paths[0])["params"], str(paths[0]), paths[0]
    return hub_card_params(str(shard_or_repo), revision), f"dataset '{shard_or_repo}'", None


def _locate(spec: str, shard: Path | None) -> str:
    """A relative folder or file recorded at extraction is relative to the run's working
    directory: found from here, or from the folders above the shard (results/… lives there)."""
    from logit_lineage.teacher.source import PKG_PREFIX

    if spec.startswith(PKG_PREFIX) or Path(spec).is_absolute() or Path(spec).exists() or shard is None:
        return spec
    for folder in Path(shard).resolve().parents:
        if (folder / spec).exists():
            return str(folder / spec)
    return spec


def teacher_tokenizer(shard_or_repo, *, teacher: str | None = None, revision: str | None = None,
                      check: bool = True):
    """The exact tokenizer (with its chat template) that made the shards.

    `shard_or_repo`: a shard file, a folder or glob of shards, or a Hub dataset repo id.
    `teacher`: load from here instead of the recorded source (a local copy of the teacher:
    folder, `.gguf` file or `pkg:` spec); `revision`: the Hub dataset repo's revision.
    With `check`, the tokenizer and the chat template must match the shard's fingerprints.
    """
    from transformers import AutoTokenizer

    from logit_lineage.formats.fingerprints import check_student_tokenizer
    from logit_lineage.teacher.source import explain_load_error, resolve_teacher

    params, where, shard = _shard_params(shard_or_repo, revision)
    record = params.get(RECORD_KEY)
    if not isinstance(record, dict) and teacher is None:
        raise LineageError(f"{where}: no '{RECORD_KEY}' in the shard's params (written before it was recorded); "
                           "pass teacher=<Hub id, folder or .gguf file of the teacher>")
    record = record if isinstance(record, dict) else {}
    spec = str(teacher) if teacher is not None else _locate(str(record["teacher"]), shard)
    source = resolve_teacher(spec)
    kwargs = source.pretrained_kwargs(None if source.is_gguf else record.get("revision"))
    try:
        tok = AutoTokenizer.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
        raise explain_load_error(source, "tokenizer", exc) from None
    if record.get("chat_template") is not None:
        tok.chat_template = record["chat_template"]
    if check:
        try:
            check_student_tokenizer(params, tok, source=where)
        except LineageError as exc:
            raise LineageError(f"the tokenizer loaded from '{spec}' is not the one the shards were made with: "
                               f"{exc}") from None
    return tok
