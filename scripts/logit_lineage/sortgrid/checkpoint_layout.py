"""Attention/MLP weight layouts of GPT checkpoints, detection and conversion.

Two layouts exist for the same weights:

`small` (split; train_gpt_small.py, nanoGPT, older sort checkpoints)
    <block>.attn.qkv_w            [3, hdim, dim]   or  <block>.attn.c_attn.weight [3*hdim, dim]
                                                   or  <block>.attn.{c_q,c_k,c_v}.weight (also
                                                       q_proj/k_proj/v_proj, query/key/value)
    <block>.attn.c_proj.weight    [dim, hdim]      (also o_proj / out_proj; CastedLinear wrappers,
                                                    hence the `.weight` leaves)
    <block>.mlp.c_fc.weight       [hdim, dim]
    <block>.mlp.c_proj.weight     [dim, hdim]
`medium` (fused; train_gpt_medium.py, GPTBatched, this project's sort model)
    <block>.attn.qkvo_w           [4, hdim, dim]   qkvo_w[0:3] = q, k, v; qkvo_w[3] = the split
                                                   layout's c_proj.weight AS IS (both are used
                                                   as F.linear(y, W)), so hdim must equal dim
    <block>.mlp.fc_w              [hdim, dim]
    <block>.mlp.proj_w            [dim, hdim]

Also handled: `_orig_mod.` (torch.compile) and leading `module.` (DDP) prefixes; vocab
padding of embedding/lm_head rows (e.g. 50257 <-> 50304); 1-D scalar vectors whose length
differs between versions (overlap copied, the rest keeps the target's values); zero biases
of split projections (dropped; the fused layout has none, so non-zero biases are an error).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from logit_lineage.common.errors import LineageError

SMALL = "small"
MEDIUM = "medium"
LAYOUT_DESCRIPTIONS = {
    SMALL: "split attention: qkv_w [3, hdim, dim] (or c_attn / separate q,k,v) + c_proj.weight, "
    "CastedLinear c_fc/c_proj MLP (train_gpt_small.py style); needs conversion",
    MEDIUM: "fused attention: qkvo_w [4, hdim, dim], fc_w/proj_w MLP "
    "(train_gpt_medium.py / GPTBatched style); loads directly",
}

_ATTN_MODULE = r"(?P<module>(?:.+\.)?(?:self_)?attn)"
_MLP_MODULE = r"(?P<module>(?:.+\.)?mlp)"
_Q, _K, _V = ("c_q", "q_proj", "query"), ("c_k", "k_proj", "key"), ("c_v", "v_proj", "value")
_O = ("c_proj", "o_proj", "out_proj")
_SPLIT_ATTN_RE = re.compile(
    _ATTN_MODULE + r"\.(?P<part>qkv_w|(?:c_attn|" + "|".join(_Q + _K + _V + _O) + r")\.(?:weight|bias))"
)
_SPLIT_MLP_RE = re.compile(_MLP_MODULE + r"\.(?P<part>(?:c_fc|c_proj)\.(?:weight|bias))")
_FUSED_ATTN_RE = re.compile(_ATTN_MODULE + r"\.qkvo_w")
_FUSED_MLP_RE = re.compile(_MLP_MODULE + r"\.(?:fc_w|proj_w)")
# Rows indexed by token id: padded to a multiple of 64/128 in some training scripts.
VOCAB_KEY_RE = re.compile(r"(?:^|.*\.)(?:wte|embed|embed_tokens|lm_head|value_embeds\.\d+)\.weight")
# nanoGPT module paths -> this project's sort model paths.
SORT_KEY_ALIASES = (
    (re.compile(r"^transformer\.h\.(\d+)\."), r"blocks.\1."),
    (re.compile(r"^transformer\.(wte|wpe|ln_f)\."), r"\1."),
)

StateDict = dict[str, torch.Tensor]


def strip_wrapper_prefixes(sd: Mapping[str, torch.Tensor], path=None) -> tuple[StateDict, int]:
    """Remove `_orig_mod.` anywhere and a leading `module.`; returns (state dict, keys changed)."""
    out: StateDict = {}
    changed = 0
    for key, value in sd.items():
        new = key.replace("_orig_mod.", "")
        if new.startswith("module."):
            new = new[len("module."):]
        changed += new != key
        if new in out:
            raise LineageError(f"keys {key!r} and another both become {new!r} once prefixes are stripped", path=path)
        out[new] = value
    return out, changed


def apply_sort_aliases(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        for pattern, repl in SORT_KEY_ALIASES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def detect_layout(sd: Mapping[str, torch.Tensor], path=None) -> str:
    """`small` (split) or `medium` (fused); anything else is an error naming what was found."""
    keys = [k.replace("_orig_mod.", "") for k in sd]
    fused = [k for k in keys if _FUSED_ATTN_RE.fullmatch(k) or _FUSED_MLP_RE.fullmatch(k)]
    split = [k for k in keys if _SPLIT_ATTN_RE.fullmatch(k) or _SPLIT_MLP_RE.fullmatch(k)]
    if fused and split:
        raise LineageError(
            f"mixed checkpoint layout: fused key {fused[0]!r} and split key {split[0]!r}", path=path
        )
    if fused:
        return MEDIUM
    if split:
        return SMALL
    sample = ", ".join(sorted(keys)[:6]) or "no keys"
    raise LineageError(
        "unknown checkpoint layout: no attention/MLP weights named qkvo_w, qkv_w, c_attn, "
        f"c_q/q_proj/query, c_fc or fc_w (found: {sample})",
        path=path,
    )


def _zero_or_fail(key: str, value: torch.Tensor, path) -> None:
    if torch.count_nonzero(value).item():
        raise LineageError(f"key {key!r}: non-zero bias cannot be stored in the fused layout (it has no biases)", path=path)


def to_fused(sd: Mapping[str, torch.Tensor], path=None) -> StateDict:
    """Convert a split (`small`) state dict to the fused (`medium`) layout.

    A fused state dict is returned unchanged (as a new dict). Keys that are not part
    of attention or MLP projections pass through untouched.
    """
    sd, _ = strip_wrapper_prefixes(sd, path)
    if detect_layout(sd, path) == MEDIUM:
        return dict(sd)
    out: StateDict = {}
    attn: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m_attn = _SPLIT_ATTN_RE.fullmatch(key)
        m_mlp = _SPLIT_MLP_RE.fullmatch(key)
        if m_attn:
            part = m_attn["part"]
            if part.endswith(".bias"):
                _zero_or_fail(key, value, path)
                continue
            attn.setdefault(m_attn["module"], {})[part.removesuffix(".weight")] = value
        elif m_mlp:
            part = m_mlp["part"]
            if part.endswith(".bias"):
                _zero_or_fail(key, value, path)
                continue
            leaf = "fc_w" if part.startswith("c_fc") else "proj_w"
            out[f"{m_mlp['module']}.{leaf}"] = value
        else:
            out[key] = value
    for module, parts in attn.items():
        out[f"{module}.qkvo_w"] = _fuse_attention(module, parts, path)
    return out


def _pick(parts: dict[str, torch.Tensor], names: tuple[str, ...]) -> torch.Tensor | None:
    found = [parts[n] for n in names if n in parts]
    return found[0] if found else None


def _fuse_attention(module: str, parts: dict[str, torch.Tensor], path) -> torch.Tensor:
    if "qkv_w" in parts:
        qkv = parts["qkv_w"]
        if qkv.ndim != 3 or qkv.shape[0] != 3:
            raise LineageError(f"key '{module}.qkv_w' has shape {list(qkv.shape)}, expected [3, hdim, dim]", path=path)
    elif "c_attn" in parts:
        w = parts["c_attn"]
        if w.ndim != 2 or w.shape[0] % 3:
            raise LineageError(f"key '{module}.c_attn.weight' has shape {list(w.shape)}, expected [3*hdim, dim]", path=path)
        qkv = w.reshape(3, w.shape[0] // 3, w.shape[1])
    else:
        q, k, v = (_pick(parts, names) for names in (_Q, _K, _V))
        if q is None or k is None or v is None:
            raise LineageError(f"module {module!r}: no qkv_w, c_attn or complete q/k/v weights", path=path)
        if not q.shape == k.shape == v.shape or q.ndim != 2:
            raise LineageError(
                f"module {module!r}: q/k/v shapes {list(q.shape)}, {list(k.shape)}, {list(v.shape)} differ",
                path=path,
            )
        qkv = torch.stack([q, k, v])
    out = _pick(parts, _O)
    if out is None:
        raise LineageError(f"module {module!r}: no output projection (c_proj/o_proj/out_proj.weight)", path=path)
    _, hdim, dim = qkv.shape
    if list(out.shape) != [dim, hdim] or hdim != dim:
        raise LineageError(
            f"module {module!r}: output projection {list(out.shape)} with q/k/v [{hdim}, {dim}]: "
            "the fused layout stores c_proj.weight [dim, hdim] in a [hdim, dim] slot as is, "
            "which needs hdim == dim",
            path=path,
        )
    dtype = torch.promote_types(qkv.dtype, out.dtype)
    return torch.cat([qkv.to(dtype), out.to(dtype).unsqueeze(0)], dim=0).contiguous()


def to_split(sd: Mapping[str, torch.Tensor], style: str = "qkv_w", path=None) -> StateDict:
    """Convert a fused state dict to a split layout (the inverse of `to_fused`).

    style: `qkv_w` (train_gpt_small.py), `c_attn` (nanoGPT) or `qkv` (separate c_q/c_k/c_v).
    """
    if style not in ("qkv_w", "c_attn", "qkv"):
        raise LineageError(f"unknown split style {style!r} (qkv_w, c_attn or qkv)")
    if detect_layout(sd, path) == SMALL:
        return dict(sd)
    out: StateDict = {}
    for key, value in sd.items():
        m_attn = _FUSED_ATTN_RE.fullmatch(key)
        m_mlp = _FUSED_MLP_RE.fullmatch(key)
        if m_attn:
            module = m_attn["module"]
            qkv = value[:3]
            if style == "qkv_w":
                out[f"{module}.qkv_w"] = qkv.clone()
            elif style == "c_attn":
                out[f"{module}.c_attn.weight"] = qkv.reshape(-1, qkv.shape[-1]).clone()
            else:
                for name, w in zip(("c_q", "c_k", "c_v"), qkv):
                    out[f"{module}.{name}.weight"] = w.clone()
            out[f"{module}.c_proj.weight"] = value[3].clone()
        elif m_mlp:
            leaf = "c_fc" if key.endswith(".fc_w") else "c_proj"
            out[f"{m_mlp['module']}.{leaf}.weight"] = value.clone()
        else:
            out[key] = value
    return out


def fit_rows(value: torch.Tensor, rows: int) -> torch.Tensor:
    """Pad with zero rows, or drop trailing rows (vocab padding, e.g. 50257 <-> 50304)."""
    if value.shape[0] >= rows:
        return value[:rows].clone()
    pad = value.new_zeros((rows - value.shape[0], *value.shape[1:]))
    return torch.cat([value, pad], dim=0)


def fit_vector(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Copy the overlap of two 1-D vectors; the rest keeps the target's values."""
    out = target.detach().clone().to(value.dtype)
    n = min(value.shape[0], target.shape[0])
    out[:n] = value[:n]
    return out


def adapt_to_target(sd: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], path=None) -> StateDict:
    """Make `sd` load strictly into a model whose state dict is `target`.

    Vocab-indexed matrices are padded/trimmed, 1-D scalar vectors of another length are
    fitted; every other difference (missing, unexpected or misshapen key) is an error.
    """
    missing = sorted(set(target) - set(sd))
    unexpected = sorted(set(sd) - set(target))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        raise LineageError(f"state dict does not match the model: {'; '.join(parts)}", path=path)
    out: StateDict = {}
    for key, want in target.items():
        have = sd[key]
        if have.shape == want.shape:
            out[key] = have
        elif have.ndim == want.ndim == 2 and have.shape[1] == want.shape[1] and VOCAB_KEY_RE.fullmatch(key):
            out[key] = fit_rows(have, want.shape[0])
        elif have.ndim == want.ndim == 1:
            out[key] = fit_vector(have, want)
        else:
            raise LineageError(
                f"key {key!r} has shape {list(have.shape)}, the model expects {list(want.shape)}", path=path
            )
    return out


def normalize_sort_state_dict(sd: Mapping[str, torch.Tensor], path=None) -> tuple[StateDict, str]:
    """Any supported sort checkpoint's weights -> this project's fused key names.

    Returns (fused state dict, layout the file had).
    """
    sd, _ = strip_wrapper_prefixes(sd, path)
    sd = apply_sort_aliases(sd)
    layout = detect_layout(sd, path)
    return to_fused(sd, path), layout
