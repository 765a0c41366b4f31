"""A teacher split over devices (distill.gpus_per_job): the same records and bytes as a
one-device load, and the SLURM request that goes with it.

No GPU here: accelerate's device maps also take "cpu" and "disk" entries, so the demo
teacher is split with some layers offloaded to disk (their weights come in through
accelerate's hooks at each forward, as layers on another GPU would) and extraction is
compared byte for byte with the plain load."""
from __future__ import annotations

import re

import pytest
import torch

from conftest import run_snakemake
from logit_lineage.common.errors import LineageError
from logit_lineage.distill.extract import ExtractionSettings, compress_batch
from logit_lineage.distill.inputs import tokenize_row
from logit_lineage.formats.indices import high_bits_for_vocab
from logit_lineage.formats.logits import build_table, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.teacher.chat import MaskOptions
from logit_lineage.teacher.compress import Workspace
from logit_lineage.teacher.data import Row, load_conversations
from logit_lineage.teacher.load import balanced_device_map, head_with_inputs, load_teacher, load_tokenizer
from logit_lineage.teacher.source import resolve_teacher
from slurm.support import write_site_profile

# Layer 1, the final norm and the lm head on disk: head_with_inputs brings the head back
# beside the input embedding, so the compression still runs on the first device.
SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
         "model.layers.1": "disk", "model.norm": "disk", "lm_head": "disk"}


def extract(model, rows, path, vocab):
    """The shard extract_logits would write for `rows` (three token-budget batches)."""
    settings = ExtractionSettings(compression=CompressionParams(format_version=2, top_p=0.98, top_p_max_elements=100, sampled_n=8), seed=5, token_budget=4096, max_batch_size=64,
                                  head_chunk_rows=50)
    records = []
    for batch in (rows[:3], rows[3:7], rows[7:]):
        records += compress_batch(model, batch, settings, 0, Workspace(), torch.Generator())
    params = {"vocab_size": vocab, "index_high_bits": high_bits_for_vocab(vocab), "top_p": 0.98,
              "top_p_max_elements": 100, "sampled_n": 8, "seed": 5}
    write_logits_parquet(path, build_table(records, vocab), params)
    return path.read_bytes()


def test_a_split_teacher_writes_the_same_bytes(demo_inputs, tmp_path):
    teacher = str(demo_inputs["teacher"])
    tok = load_tokenizer(teacher)
    ds = load_conversations(str(demo_inputs["dataset"]))
    rows = []
    for i in range(10):
        ids, kept = tokenize_row(tok, ds, "messages", i, MaskOptions(), "demo")
        rows.append(Row(i, ids, kept))
    plain = load_teacher(teacher, revision=None, dtype="float32", device="cpu")
    split = load_teacher(teacher, revision=None, dtype="float32", device="cpu", device_map=SPLIT,
                         offload_folder=str(tmp_path / "offload"))
    assert split.hf_device_map["lm_head"] == "cpu" and split.hf_device_map["model.layers.1"] == "disk"
    assert split.model.layers[1].mlp.up_proj.weight.device.type == "meta"  # really offloaded
    vocab = int(plain.get_output_embeddings().weight.shape[0])
    a = extract(plain, rows, tmp_path / "plain.parquet", vocab)
    b = extract(split, rows, tmp_path / "split.parquet", vocab)
    assert a == b


def test_head_goes_beside_the_input_embedding(demo_inputs):
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(demo_inputs["teacher"]))
    moved = head_with_inputs(meta, {"model.embed_tokens": 0, "model.layers": 0, "model.norm": 1, "lm_head": 1})
    assert moved["lm_head"] == 0 and moved["model.norm"] == 1
    assert head_with_inputs(meta, {"": 0}) == {"": 0}  # one device: nothing to move
    with pytest.raises(LineageError, match="puts the input embedding 'model.embed_tokens' on 'disk'"):
        head_with_inputs(meta, {"model": "disk", "lm_head": "cpu"})


@pytest.mark.parametrize("tied", [True, False], ids=["tied-head", "own-head"])
def test_balanced_map_spreads_layers_and_keeps_the_head_first(tmp_path, monkeypatch, tied):
    """The map `gpus_per_job: 3` asks for, computed with three simulated 16 GB GPUs."""
    from transformers import LlamaConfig

    # Shaped like a large teacher: every decoder layer outweighs the embedding.
    LlamaConfig(vocab_size=4_000, hidden_size=512, intermediate_size=1376, num_hidden_layers=12,
                num_attention_heads=8, num_key_value_heads=8, tie_word_embeddings=tied).save_pretrained(tmp_path)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (16 * 2**30, 16 * 2**30))
    device_map = balanced_device_map(resolve_teacher(str(tmp_path)), None, torch.bfloat16, 3)
    layers = [device_map[f"model.layers.{i}"] for i in range(12)]
    assert layers == sorted(layers) and len(set(layers)) >= 2  # in order, whole layers, split
    assert set(device_map.values()) == {0, 1, 2}  # every GPU holds part of the teacher
    assert device_map["model.embed_tokens"] == device_map["lm_head"] == 0


def test_more_gpus_than_visible_is_one_line(demo_inputs):
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wanted = max(2, visible + 1)
    with pytest.raises(LineageError) as info:
        load_teacher(str(demo_inputs["teacher"]), revision=None, dtype="auto", device="auto", gpus=wanted)
    assert str(info.value) == f"gpus={wanted} requested but {visible} CUDA device(s) are visible"
    with pytest.raises(LineageError, match="device 'cpu' conflicts"):
        load_teacher(str(demo_inputs["teacher"]), revision=None, dtype="auto", device="cpu", gpus=2)


@pytest.mark.workflow
def test_slurm_asks_for_gpus_per_job(tmp_path, tiny_configs):
    """distill.gpus_per_job: 2 → the extraction jobs ask SLURM for 2 GPUs and load the
    teacher over them; the other GPU rules keep one."""
    overlay = tmp_path / "gpus.yaml"
    overlay.write_text("distill:\n  gpus_per_job: 2\n")
    profile = write_site_profile(tmp_path / "profile", {"CPU_PARTITION": "cpu", "GPU_PARTITION": "gpu",
                                                        "ACCOUNT": ""})
    proc = run_snakemake(tmp_path / "work", "-n", "--profile", str(profile),
                         configfiles=[*tiny_configs, overlay])
    out = proc.stdout + proc.stderr
    blocks = re.split(r"\n(?=(?:local)?rule \w+:\n)", out)
    gpu = {}
    for block in blocks:
        head = re.match(r"rule (extract_logits|dump_dense_logits):\n", block)
        if head:
            res = re.search(r"^\s+resources: (.*)$", block, flags=re.M).group(1)
            gpu.setdefault(head.group(1), set()).add(re.search(r"\bgpu=(\d+)", res).group(1))
    assert gpu == {"extract_logits": {"2"}, "dump_dense_logits": {"1"}}
    assert re.search(r"extract_logits\.py .*--gpus 2 ", out)
