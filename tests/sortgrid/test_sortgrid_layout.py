"""Checkpoint layouts (the original GPT training scripts'): detection, split -> fused conversion, identical outputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.checkpoint_layout import (
    MEDIUM,
    SMALL,
    adapt_to_target,
    detect_layout,
    fit_rows,
    normalize_sort_state_dict,
    strip_wrapper_prefixes,
    to_fused,
    to_split,
)
from logit_lineage.sortgrid.model import SortGPT, SortModelConfig


def _sort_model(n_layers=1, use_mlp=False, use_layernorm=True, d=16, vocab_n=10, seed=0):
    torch.manual_seed(seed)
    model = SortGPT(SortModelConfig(vocab_n=vocab_n, n_embd=d, n_heads=1, n_layers=n_layers,
                                    use_mlp=use_mlp, use_layernorm=use_layernorm))
    with torch.no_grad():  # LayerNorm gains/biases away from 1/0 so a wrong mapping shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _inputs(vocab_n=10, batch=3, length=9):
    return torch.randint(0, vocab_n + 1, (batch, length), generator=torch.Generator().manual_seed(1))


def test_the_sort_model_is_fused_and_every_split_style_is_small():
    sd = _sort_model(use_mlp=True).state_dict()
    assert detect_layout(sd) == MEDIUM
    assert "blocks.0.attn.qkvo_w" in sd and sd["blocks.0.attn.qkvo_w"].shape == (4, 16, 16)
    for style in ("qkv_w", "c_attn", "qkv"):
        assert detect_layout(to_split(sd, style)) == SMALL


@settings(max_examples=12, deadline=None)
@given(n_layers=st.integers(1, 2), use_mlp=st.booleans(), use_layernorm=st.booleans(),
       style=st.sampled_from(["qkv_w", "c_attn", "qkv"]), compiled=st.booleans())
def test_split_then_fused_round_trip_gives_identical_outputs(n_layers, use_mlp, use_layernorm, style, compiled):
    model = _sort_model(n_layers, use_mlp, use_layernorm)
    split = to_split(model.state_dict(), style)
    if compiled:  # torch.compile'd models save every key under _orig_mod.
        split = {f"_orig_mod.{k}": v for k, v in split.items()}
    fused, layout = normalize_sort_state_dict(split)
    assert layout == SMALL
    assert fused.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(fused[key], value), key
    other = SortGPT(model.cfg).eval()
    other.load_state_dict(fused, strict=True)
    x = _inputs()
    assert torch.equal(other(x), model(x))


class NanoGPTSplit(nn.Module):
    """An independent split-layout sort model, nanoGPT style (c_attn + c_proj, transformer.h.N)."""

    def __init__(self, d, vocab, n_layers, use_mlp):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d),
            h=nn.ModuleList(nn.ModuleDict(dict(
                ln_1=nn.LayerNorm(d),
                attn=nn.ModuleDict(dict(c_attn=nn.Linear(d, 3 * d, bias=False), c_proj=nn.Linear(d, d, bias=False))),
                **({"ln_2": nn.LayerNorm(d), "mlp": nn.ModuleDict(dict(
                    c_fc=nn.Linear(d, 4 * d, bias=False), c_proj=nn.Linear(4 * d, d, bias=False)))} if use_mlp else {}),
            )) for _ in range(n_layers)),
            ln_f=nn.LayerNorm(d),
        ))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.add_(0.2 * torch.randn_like(p))

    def forward(self, idx):
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            h = block.ln_1(x)
            q, k, v = block.attn.c_attn(h).chunk(3, dim=-1)
            att = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
            T = idx.shape[1]
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
            x = x + block.attn.c_proj(att.softmax(-1) @ v)
            if "mlp" in block:
                x = x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(x))))
        return self.lm_head(self.transformer.ln_f(x))


@pytest.mark.parametrize("n_layers, use_mlp", [(1, False), (2, True)])
def test_an_independent_split_model_converts_to_the_same_outputs(n_layers, use_mlp):
    torch.manual_seed(3)
    ref = NanoGPTSplit(d=16, vocab=11, n_layers=n_layers, use_mlp=use_mlp).eval()
    fused, layout = normalize_sort_state_dict(ref.state_dict())
    assert layout == SMALL
    model = SortGPT(SortModelConfig(vocab_n=10, n_embd=16, n_layers=n_layers, use_mlp=use_mlp)).eval()
    model.load_state_dict(adapt_to_target(fused, model.state_dict()), strict=True)
    x = _inputs()
    torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)


# --- the language-model checkpoints of the original GPT training scripts (train_gpt_small.py vs train_gpt_medium.py) ---

class CastedLinear(nn.Linear):
    """modded-nanogpt's wrapper: a bias-free Linear whose weight is cast at use time."""

    def __init__(self, fan_in, fan_out):
        super().__init__(fan_in, fan_out, bias=False)

    def forward(self, x):
        return F.linear(x, self.weight.type_as(x))


class SmallBlock(nn.Module):
    def __init__(self, dim, hdim):
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkv_w = nn.Parameter(torch.randn(3, hdim, dim) * 0.3)
        self.attn.c_proj = CastedLinear(hdim, dim)
        self.mlp = nn.Module()
        self.mlp.c_fc = CastedLinear(dim, 4 * dim)
        self.mlp.c_proj = CastedLinear(4 * dim, dim)

    def forward(self, x):
        q, k, v = F.linear(x, self.attn.qkv_w.flatten(end_dim=1)).chunk(3, dim=-1)
        x = x + self.attn.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return x + self.mlp.c_proj(F.relu(self.mlp.c_fc(x)).square())


class MediumBlock(nn.Module):
    def __init__(self, dim, hdim):
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkvo_w = nn.Parameter(torch.empty(4, hdim, dim))
        self.mlp = nn.Module()
        self.mlp.fc_w = nn.Parameter(torch.empty(4 * dim, dim))
        self.mlp.proj_w = nn.Parameter(torch.empty(dim, 4 * dim))

    def forward(self, x):
        q, k, v = F.linear(x, self.attn.qkvo_w[:3].flatten(end_dim=1)).chunk(3, dim=-1)
        x = x + F.linear(F.scaled_dot_product_attention(q, k, v, is_causal=True), self.attn.qkvo_w[3])
        return x + F.linear(F.relu(F.linear(x, self.mlp.fc_w)).square(), self.mlp.proj_w)


class LM(nn.Module):
    def __init__(self, block, vocab, dim, layers, n_scalars):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(block(dim, dim) for _ in range(layers))
        self.lm_head = CastedLinear(dim, vocab)
        self.scalars = nn.Parameter(torch.arange(n_scalars, dtype=torch.float32))

    def forward(self, idx):
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x)
        return self.lm_head(x)


def test_small_lm_checkpoint_converts_to_medium_with_identical_outputs():
    torch.manual_seed(0)
    small = LM(SmallBlock, vocab=50, dim=8, layers=2, n_scalars=4).eval()
    sd = {f"_orig_mod.{k}": v for k, v in small.state_dict().items()}
    assert detect_layout(sd) == SMALL
    fused = to_fused(sd)
    assert detect_layout(fused) == MEDIUM
    assert torch.equal(fused["blocks.0.attn.qkvo_w"][3], small.blocks[0].attn.c_proj.weight)  # as is
    medium = LM(MediumBlock, vocab=50, dim=8, layers=2, n_scalars=4).eval()
    assert fused.keys() == medium.state_dict().keys()
    medium.load_state_dict(fused, strict=True)
    x = torch.randint(0, 50, (2, 7))
    torch.testing.assert_close(medium(x), small(x))


def test_vocab_padding_and_scalars_of_another_length_are_fitted():
    torch.manual_seed(0)
    small = LM(SmallBlock, vocab=50, dim=8, layers=1, n_scalars=3).eval()
    medium = LM(MediumBlock, vocab=64, dim=8, layers=1, n_scalars=5)  # vocab padded to a multiple of 64
    fitted = adapt_to_target(to_fused(small.state_dict()), medium.state_dict())
    medium.load_state_dict(fitted, strict=True)
    assert torch.equal(medium.embed.weight[:50], small.embed.weight)
    assert torch.count_nonzero(medium.embed.weight[50:]) == 0
    assert medium.scalars.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # overlap copied, the rest the target's
    x = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(medium.eval()(x)[..., :50], small(x))


def test_fit_rows_pads_50257_to_50304_and_back():
    emb = torch.randn(50257, 2)
    padded = fit_rows(emb, 50304)
    assert padded.shape == (50304, 2) and torch.equal(padded[:50257], emb)
    assert torch.equal(fit_rows(padded, 50257), emb)


def test_strip_wrapper_prefixes():
    sd, n = strip_wrapper_prefixes({"module._orig_mod.a.qkvo_w": torch.zeros(1), "b": torch.zeros(1)})
    assert set(sd) == {"a.qkvo_w", "b"} and n == 1
    with pytest.raises(LineageError, match="both become"):
        strip_wrapper_prefixes({"_orig_mod.x": torch.zeros(1), "x": torch.zeros(1)})


@pytest.mark.parametrize(
    "sd, expect",
    [
        ({"encoder.layer.0.dense.weight": torch.zeros(2, 2)}, "unknown checkpoint layout"),
        ({}, "unknown checkpoint layout"),
        ({"b.attn.qkvo_w": torch.zeros(4, 2, 2), "b.mlp.c_fc.weight": torch.zeros(8, 2)}, "mixed"),
    ],
)
def test_unknown_or_mixed_layouts_are_one_line_errors(sd, expect):
    with pytest.raises(LineageError) as info:
        detect_layout(sd, path="x.pt")
    assert expect in str(info.value) and str(info.value).startswith("x.pt:") and "\n" not in str(info.value)


def test_biases_zero_are_dropped_nonzero_refused_and_hdim_must_equal_dim():
    base = {"h.attn.c_attn.weight": torch.randn(12, 4), "h.attn.c_proj.weight": torch.randn(4, 4)}
    fused = to_fused({**base, "h.attn.c_attn.bias": torch.zeros(12)})
    assert set(fused) == {"h.attn.qkvo_w"}
    with pytest.raises(LineageError, match="non-zero bias"):
        to_fused({**base, "h.attn.c_attn.bias": torch.ones(12)})
    with pytest.raises(LineageError, match="hdim == dim"):
        to_fused({"h.attn.qkv_w": torch.randn(3, 6, 4), "h.attn.c_proj.weight": torch.randn(4, 6)})
    with pytest.raises(LineageError, match="output projection"):
        to_fused({"h.attn.qkv_w": torch.randn(3, 4, 4)})


def test_adapt_to_target_names_missing_and_misshapen_keys():
    target = {"wte.weight": torch.zeros(5, 4), "blocks.0.attn.qkvo_w": torch.zeros(4, 4, 4)}
    with pytest.raises(LineageError, match="missing blocks.0.attn.qkvo_w"):
        adapt_to_target({"wte.weight": torch.zeros(5, 4)}, target)
    with pytest.raises(LineageError, match="'blocks.0.attn.qkvo_w' has shape"):
        adapt_to_target({"wte.weight": torch.zeros(5, 4), "blocks.0.attn.qkvo_w": torch.zeros(4, 2, 4)}, target)
