"""Load a teacher and compute its logits exactly as its own `forward` does.

The lm head runs only on kept positions: the decoder body gives hidden states,
and `head_logits` applies the output embedding plus the final post-processing
the model family's forward applies (final logit softcapping, logit scales).
`check_head_matches_forward` compares that path with the model's own forward
on a probe sequence and refuses a model whose forward does something else.
"""
from __future__ import annotations

import logging

import torch

from logit_lineage.common.errors import LineageError

log = logging.getLogger("logit_lineage")


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LineageError(f"device '{device}' requested but CUDA is not available")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_tokenizer(name_or_path: str, revision: str | None = None, chat_template: str | None = None):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as exc:
        raise LineageError(f"cannot load tokenizer '{name_or_path}': {str(exc).splitlines()[0]}") from None
    if chat_template:
        with open(chat_template) as fh:
            tok.chat_template = fh.read()
    if not getattr(tok, "chat_template", None):
        raise LineageError(f"tokenizer '{name_or_path}' has no chat template; set distill.chat_template")
    return tok


def load_teacher(name_or_path: str, *, revision: str | None, dtype: str, device: str):
    from transformers import AutoModelForCausalLM

    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, revision=revision, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise LineageError(f"cannot load teacher '{name_or_path}': {str(exc).splitlines()[0]}") from None
    model.to(dev).eval()
    return model


def decoder_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Final hidden states [B, T, H] of the decoder body (no lm head)."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    out = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits for hidden rows [m, H], as the model's forward computes them, as float32."""
    logits = model.get_output_embeddings()(hidden)
    cfg = model.config
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    scale = getattr(text_cfg, "logit_scale", None)  # Cohere multiplies
    if scale is not None and not isinstance(scale, bool):
        logits = logits * scale
    scaling = getattr(text_cfg, "logits_scaling", None)  # Granite divides
    if scaling:
        logits = logits / scaling
    cap = getattr(text_cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


@torch.inference_mode()
def check_head_matches_forward(model, input_ids: torch.Tensor) -> float:
    """Max |Δ| between head_logits on the body's hidden states and model(...).logits."""
    ids = input_ids[None, :]
    mask = torch.ones_like(ids)
    ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[0].float()
    ours = head_logits(model, decoder_hidden(model, ids, mask)[0])
    diff = float((ours - ref).abs().max())
    tol = 1e-3 if ours.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32 else 5e-2
    if diff > tol * max(1.0, float(ref.abs().max())):
        raise LineageError(
            f"teacher {type(model).__name__}: logits from body + head differ from its forward by {diff:.3g}; "
            "its forward post-processes logits in a way this extractor does not reproduce"
        )
    return diff
