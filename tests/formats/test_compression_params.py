"""CompressionParams: one carrier of the compression parameters, its field names the config
keys (the shared schema definition), from a config section to a shard's metadata and back."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import coerce_strings, fill_defaults, load_schema, schema_defaults
from logit_lineage.distill.extract import ExtractionSettings
from logit_lineage.formats.logits import build_table, read_metadata, storage, write_logits_parquet
from logit_lineage.formats.params import CompressionParams
from logit_lineage.kd.online import compressed_records, shard_params
from logit_lineage.teacher.compress import RandomNoise, compress_rows


def test_fields_are_the_shared_schema_definition():
    defs = yaml.safe_load((REPO / "workflow" / "schemas" / "defs.yaml").read_text())["$defs"]["compression"]
    assert [f.name for f in dataclasses.fields(CompressionParams)] == defs["required"] == list(defs["properties"])
    # the distill section and student.formats both point at it
    distill = yaml.safe_load((REPO / "workflow" / "schemas" / "distill.schema.yaml").read_text())["properties"]
    for name in defs["properties"]:
        assert distill[name]["$ref"] == f"defs.yaml#/$defs/compression/properties/{name}"
    student = yaml.safe_load((REPO / "workflow" / "schemas" / "student.schema.yaml").read_text())["properties"]
    assert student["formats"]["additionalProperties"] == {"$ref": "defs.yaml#/$defs/compression"}


def test_distill_defaults_build_it_and_the_shared_constraints_hold():
    c = CompressionParams.from_config(schema_defaults("distill"))
    assert c == CompressionParams(format_version=2, top_p=0.98, top_p_max_elements=100, sampled_n=24)
    with pytest.raises(LineageError, match="distill.top_p_max_elements"):
        fill_defaults({"top_p_max_elements": 256}, "distill", check=True)
    with pytest.raises(LineageError, match="distill.format_version"):
        fill_defaults({"format_version": 4}, "distill", check=True)
    with pytest.raises(LineageError, match=r"student.formats.v9.sampled_n|student.formats.v9"):
        fill_defaults({"formats": {"v9": {"format_version": 3, "top_p": 0.9, "top_p_max_elements": 8,
                                          "sampled_n": 300}}}, "student", check=True)
    with pytest.raises(LineageError, match="student.formats.v9"):
        fill_defaults({"formats": {"v9": {"format_version": 3, "top_p": 0.9}}}, "student", check=True)


def test_frozen_keyword_only_and_typed():
    c = CompressionParams(format_version=3, top_p=0.9, top_p_max_elements=16, sampled_n=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.top_p = 0.5
    with pytest.raises(TypeError):
        CompressionParams(3, 0.9, 16, 8)
    with pytest.raises(LineageError, match="sampled_n"):
        CompressionParams(format_version=3, top_p=0.9, top_p_max_elements=16, sampled_n="8")
    with pytest.raises(LineageError, match=r"lack \['sampled_n'\]"):
        CompressionParams.from_config({"format_version": 3, "top_p": 0.9, "top_p_max_elements": 16})
    with pytest.raises(TypeError):
        ExtractionSettings(c, 1, 100, 4, 64)  # keyword only


@settings(max_examples=25, deadline=None)
@given(version=st.sampled_from([2, 3]), top_p=st.floats(0.05, 1.0), cap=st.integers(1, 40), k=st.integers(0, 12))
def test_metadata_round_trip(tmp_path_factory, version, top_p, cap, k):
    c = CompressionParams(format_version=version, top_p=top_p, top_p_max_elements=cap, sampled_n=k)
    vocab = 50
    logits = torch.randn(3, vocab, generator=torch.Generator().manual_seed(0))
    comp = compress_rows(logits, RandomNoise(3, torch.Generator().manual_seed(1)), top_p=c.top_p,
                         cap=c.top_p_max_elements, k=c.sampled_n)
    records = compressed_records(comp, [[1, 2, 3]], token_ids=[[4, 5, 6]])
    params = shard_params(vocab, 7, **c.metadata_params())
    path = tmp_path_factory.mktemp("p") / "shard.parquet"
    write_logits_parquet(path, build_table(records, vocab, version=version, seed=7), params)
    assert CompressionParams.from_metadata(read_metadata(path)) == c
    assert {k: v for k, v in storage([path]).items() if k in c.as_dict()} == c.as_dict()


def test_command_line_strings_become_numbers_through_the_shared_definition():
    """`--config student='{"formats": {...}}'` gives strings; the entries' schema is the $ref."""
    data = {"formats": {"v9": {"format_version": "3", "top_p": "0.9", "top_p_max_elements": "16", "sampled_n": "8"}}}
    changed = coerce_strings(data, load_schema("student"))
    assert sorted(changed) == [f"formats.v9.{k}" for k in ("format_version", "sampled_n", "top_p",
                                                             "top_p_max_elements")]
    assert CompressionParams.from_config(data["formats"]["v9"]) == CompressionParams(
        format_version=3, top_p=0.9, top_p_max_elements=16, sampled_n=8)
    distill = {"sampled_n": "12"}
    assert coerce_strings(distill, load_schema("distill")) == ["sampled_n"] and distill["sampled_n"] == 12
