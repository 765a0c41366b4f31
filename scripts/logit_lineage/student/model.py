"""The student model: a Llama built from the teacher's config, and its checkpoint file.

The student shares the teacher's vocabulary (the compressed logits index it) and is
smaller in both directions: round(layers × depth_fraction) layers, round(heads ×
width_fraction) heads of the teacher's head size, round(intermediate × width_fraction)
MLP width. Training starts from scratch, so the teacher's architecture family does not
matter: any causal LM config with the usual fields gives a Llama student.

Checkpoint: one safetensors file (the state dict, float32) whose `__metadata__` holds
    format          "logit-lineage-student"
    format_version  "1"
    config          the LlamaConfig as JSON
    method, seed, steps
so the file alone rebuilds the model (`load_student`); other formats or versions are refused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from logit_lineage.common.errors import LineageError
from logit_lineage.formats.envelope import check_envelope
from logit_lineage.formats.safetensors_file import save_sorted

FORMAT = "logit-lineage-student"
FORMAT_VERSION = "1"


def _text_config(cfg):
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def student_config(teacher_config, *, depth_fraction: float = 0.5, width_fraction: float = 0.5):
    """A LlamaConfig for the student of `teacher_config` (any causal-LM config)."""
    from transformers import LlamaConfig

    t = _text_config(teacher_config)
    try:
        vocab, hidden, layers = int(t.vocab_size), int(t.hidden_size), int(t.num_hidden_layers)
        heads = int(t.num_attention_heads)
        inter = int(getattr(t, "intermediate_size", None) or 4 * hidden)
    except (AttributeError, TypeError) as exc:
        raise LineageError(f"teacher config {type(t).__name__} lacks a size field the student needs: {exc}") from None
    head_dim = int(getattr(t, "head_dim", None) or hidden // heads)
    s_heads = max(1, round(heads * width_fraction))
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=s_heads * head_dim,
        intermediate_size=max(1, round(inter * width_fraction)),
        num_hidden_layers=max(1, round(layers * depth_fraction)),
        num_attention_heads=s_heads,
        num_key_value_heads=s_heads,
        head_dim=head_dim,
        max_position_embeddings=int(getattr(t, "max_position_embeddings", None) or 2048),
        rms_norm_eps=float(getattr(t, "rms_norm_eps", None) or 1e-6),
        tie_word_embeddings=False,
        pad_token_id=getattr(t, "pad_token_id", None),
        eos_token_id=getattr(t, "eos_token_id", None),
        bos_token_id=getattr(t, "bos_token_id", None),
    )


def build_student(config, seed: int):
    """A freshly initialised student; the same (config, seed) gives the same weights."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def state_sha256(model) -> str:
    """sha256 over the state dict (names, shapes, float32 bytes): equal weights, equal hash."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_student(model, path: str | Path, *, method: str, seed: int, steps: int) -> None:
    """Write the checkpoint atomically (reproducible bytes for the same weights)."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json_string(use_diff=False),
        "method": method,
        "seed": str(seed),
        "steps": str(steps),
    }
    save_sorted(tensors, path, metadata=metadata)


def read_student_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except FileNotFoundError:
        raise LineageError("no such student checkpoint", path=path) from None
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise LineageError(f"not a safetensors file ({str(exc).splitlines()[0]})", path=path) from None
    check_envelope(meta, path=path, format=FORMAT, version=FORMAT_VERSION, where="safetensors metadata",
                   what="student checkpoint")
    for key in ("config", "method", "seed", "steps"):
        if key not in meta:
            raise LineageError(f"safetensors metadata lacks key '{key}'", path=path)
    return meta


def load_student(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, metadata) from a student checkpoint."""
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    meta = read_student_metadata(path)
    config = LlamaConfig.from_dict(json.loads(meta["config"]))
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise LineageError(f"state dict does not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}",
                           path=path)
    return model.to(device).eval(), meta
