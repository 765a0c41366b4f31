"""A small GPT for sorting: no positional embedding, fused attention (`qkvo_w`).

State-dict keys (the fused `medium` layout of sortgrid.checkpoint_layout):
    wte.weight [V, d]; wpe.weight [T, d] only with positional embeddings;
    blocks.<i>.ln_1.{weight,bias}, blocks.<i>.attn.qkvo_w [4, d, d],
    blocks.<i>.ln_2.{weight,bias}, blocks.<i>.mlp.fc_w [4d, d], blocks.<i>.mlp.proj_w [d, 4d]
    (LayerNorms only when enabled, MLP only when enabled); ln_f.{weight,bias}; lm_head.weight [V, d].
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema, schema_defaults


@dataclass(frozen=True)
@defaults_from_schema("sortgrid")  # vocab_n, n_embd, n_heads, without_pos: the defaults' one home, the schema
class SortModelConfig:
    vocab_n: int  # numbers 0..vocab_n-1; token vocab_n is the separator
    n_embd: int
    n_heads: int
    n_layers: int = 1
    use_mlp: bool = False
    use_layernorm: bool = True
    without_pos: bool
    # Only bounds the positional table when it exists: long enough for the longest test sequence.
    max_seq_len: int = 2 * schema_defaults("sortgrid")["test_max_k"] + 1

    def __post_init__(self) -> None:
        if self.n_embd % self.n_heads:
            raise LineageError(f"n_embd={self.n_embd} is not divisible by n_heads={self.n_heads}")

    @property
    def vocab_size(self) -> int:
        return self.vocab_n + 1

    def to_dict(self) -> dict:
        return asdict(self)


MODEL_CONFIG_KEYS = tuple(SortModelConfig.__dataclass_fields__)


def _norm(cfg: SortModelConfig) -> nn.Module:
    return nn.LayerNorm(cfg.n_embd) if cfg.use_layernorm else nn.Identity()


class FusedAttention(nn.Module):
    """Causal self-attention with q, k, v and the output projection in one tensor."""

    def __init__(self, cfg: SortModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkvo_w = nn.Parameter(torch.empty(4, cfg.n_embd, cfg.n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = F.linear(x, self.qkvo_w[:3].flatten(0, 1)).split(C, dim=-1)
        heads = lambda t: t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        # qkvo_w[3] is used like a Linear weight [out, in]; split checkpoints' c_proj.weight fits as is.
        return F.linear(y, self.qkvo_w[3])


class MLP(nn.Module):
    def __init__(self, cfg: SortModelConfig):
        super().__init__()
        self.fc_w = nn.Parameter(torch.empty(4 * cfg.n_embd, cfg.n_embd))
        self.proj_w = nn.Parameter(torch.empty(cfg.n_embd, 4 * cfg.n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.gelu(F.linear(x, self.fc_w)), self.proj_w)


class Block(nn.Module):
    def __init__(self, cfg: SortModelConfig):
        super().__init__()
        self.ln_1 = _norm(cfg)
        self.attn = FusedAttention(cfg)
        if cfg.use_mlp:
            self.ln_2 = _norm(cfg)
            self.mlp = MLP(cfg)
        else:
            self.mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        if self.mlp is not None:
            x = x + self.mlp(self.ln_2(x))
        return x


class SortGPT(nn.Module):
    def __init__(self, cfg: SortModelConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = None if cfg.without_pos else nn.Embedding(cfg.max_seq_len, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = _norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = 0.02
        # GPT-2's scaled init of the projections that write into the residual stream.
        resid_std = std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("qkvo_w"):
                nn.init.normal_(p[:3], std=std)
                nn.init.normal_(p[3], std=resid_std)
            elif name.endswith("proj_w"):
                nn.init.normal_(p, std=resid_std)
            elif p.ndim == 2:
                nn.init.normal_(p, std=std)

    def forward(self, idx: torch.Tensor, predict_from: int = 0) -> torch.Tensor:
        """Logits [B, T - predict_from, V] for positions predict_from..T-1.

        The head runs only on the positions whose predictions are used.
        """
        T = idx.shape[1]
        x = self.wte(idx)
        if self.wpe is not None:
            if T > self.cfg.max_seq_len:
                raise LineageError(f"sequence of {T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
            x = x + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x[:, predict_from:]))
