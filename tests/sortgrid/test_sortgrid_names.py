"""Checkpoint names (the original sort-grid runs' convention): parse, format, round trip, bad names."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.names import (
    CheckpointName,
    format_checkpoint_name,
    parse_checkpoint_name,
)

# The three examples in the original sort-grid notes, with the fields they describe for each.
SEED_EXAMPLES = {
    "Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters40000.pt": dict(
        prefix="Final", n_layers=1, use_mlp=False, use_layernorm=True, length_mode="mix",
        train_min_k=4, train_max_k=4, iters=40000,
    ),
    "Final_N128_d128_H1_L2_npos1_mlp1_ln1_lencurriculum_trainK2to12_testK17to32_nodup1_iters40000.pt": dict(
        prefix="Final", n_layers=2, use_mlp=True, use_layernorm=True, length_mode="curriculum",
        train_min_k=2, train_max_k=12, iters=40000,
    ),
    "Final_N128_d128_H1_L1_npos1_mlp0_ln0_lenmix_trainK2to8_testK17to32_nodup1_iters40000.pt": dict(
        prefix="Final", n_layers=1, use_mlp=False, use_layernorm=False, length_mode="mix",
        train_min_k=2, train_max_k=8, iters=40000,
    ),
}


@pytest.mark.parametrize("name", sorted(SEED_EXAMPLES))
def test_seed_examples_parse_to_the_described_fields(name):
    parsed = parse_checkpoint_name(name)
    for field, value in SEED_EXAMPLES[name].items():
        assert getattr(parsed, field) == value, field
    # Fixed in every seed experiment:
    assert (parsed.vocab_n, parsed.n_embd, parsed.n_heads) == (128, 128, 1)
    assert parsed.without_pos and parsed.no_duplicates
    assert (parsed.test_min_k, parsed.test_max_k) == (17, 32)
    assert parsed.format() == name


def test_a_path_parses_by_its_last_part_and_stem_drops_prefix_and_iters():
    name = parse_checkpoint_name("/x/y/" + next(iter(SEED_EXAMPLES)))
    assert name.stem == "N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1"
    inter = name.with_checkpoint("Checkpoint", 20001)
    assert inter.format() == f"Checkpoint_{name.stem}_iters20001.pt"


@st.composite
def checkpoint_names(draw):
    vocab = draw(st.integers(1, 300))
    heads = draw(st.integers(1, 4))
    nodup = draw(st.booleans())
    cap = vocab if nodup else 400
    tmin = draw(st.integers(1, cap))
    tmax = draw(st.integers(tmin, cap))
    emin = draw(st.integers(1, cap))
    emax = draw(st.integers(emin, cap))
    return CheckpointName(
        prefix=draw(st.sampled_from(["Checkpoint", "Final"])),
        vocab_n=vocab, n_embd=heads * draw(st.integers(1, 64)), n_heads=heads,
        n_layers=draw(st.integers(1, 12)), without_pos=draw(st.booleans()),
        use_mlp=draw(st.booleans()), use_layernorm=draw(st.booleans()),
        length_mode=draw(st.sampled_from(["mix", "curriculum"])),
        train_min_k=tmin, train_max_k=tmax, test_min_k=emin, test_max_k=emax,
        no_duplicates=nodup, iters=draw(st.integers(0, 10**7)),
    )


@settings(max_examples=200, deadline=None)
@given(checkpoint_names())
def test_format_then_parse_is_identity(name):
    assert parse_checkpoint_name(format_checkpoint_name(name)) == name


NAME_REGEX = (
    r"\A(Checkpoint|Final)_N[1-9][0-9]{0,2}_d[1-9][0-9]{0,2}_H1_L[1-9]_npos[01]_mlp[01]_ln[01]"
    r"_len(mix|curriculum)_trainK[1-9]to[1-9]_testK[1-9]to[1-9]_nodup0_iters(0|[1-9][0-9]{0,6})\.pt\Z"
)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(NAME_REGEX))
def test_parse_then_format_is_identity(text):
    try:
        parsed = parse_checkpoint_name(text)
    except LineageError as exc:  # min > max ranges are drawn too; they must be refused as such
        assert "min > max" in str(exc)
        return
    assert parsed.format() == text


@pytest.mark.parametrize(
    "bad, expect",
    [
        ("Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1.pt", "convention"),
        ("Best_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters5.pt", "convention"),
        ("Final_N0128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters5.pt", "convention"),
        ("Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenzigzag_trainK4to4_testK17to32_nodup1_iters5.pt", "length mode"),
        ("Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK8to4_testK17to32_nodup1_iters5.pt", "min > max"),
        ("Final_N16_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters5.pt", "distinct"),
        ("Final_N128_d128_H3_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters5.pt", "divisible"),
        ("Final_N128_d128_H1_L1_npos1_mlp0_ln1_lenmix_trainK4to4_testK17to32_nodup1_iters5.ckpt", "convention"),
    ],
)
def test_bad_names_fail_with_one_line_naming_the_file(bad, expect):
    with pytest.raises(LineageError) as info:
        parse_checkpoint_name(bad)
    message = str(info.value)
    assert expect in message and bad in message and "\n" not in message


def test_fields_are_checked_when_built_directly():
    good = parse_checkpoint_name(next(iter(SEED_EXAMPLES)))
    with pytest.raises(LineageError, match="prefix"):
        dataclasses.replace(good, prefix="Best")
