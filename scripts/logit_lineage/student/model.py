"""The student model, built from the teacher, and its checkpoint file. Two inits:

- scratch (`student_config`, `build_student`): a Llama sharing the teacher's vocabulary
  (the compressed logits index it), smaller in both directions: round(layers ×
  depth_fraction) layers, round(heads × width_fraction) heads of the teacher's head size,
  round(intermediate × width_fraction) MLP width, random weights from the seed. The
  teacher's architecture family does not matter: any causal LM config with the usual
  fields gives a Llama student.
- pruned (`pruned_student`): a depth-pruned copy of the teacher, its own architecture:
  round(layers × depth_fraction) of its decoder layers, evenly spaced with the first and
  the last kept (`kept_layers`), every kept weight copied (embeddings, final norm and head
  included), width unchanged. This is the depth axis of Minitron (Muralidharan et al.
  2024, "Compact Language Models via Pruning and Knowledge Distillation",
  https://arxiv.org/abs/2407.14679), which prunes a trained model and recovers its quality
  by distillation from the unpruned teacher; ShortGPT (Men et al. 2024, "ShortGPT: Layers
  in Large Language Models are More Redundant Than You Expect",
  https://arxiv.org/abs/2403.03853) drops the layers whose output changes the hidden state
  least (Block Influence). Both choose the layers by a measured importance; here they are
  spaced evenly, which needs no calibration data and keeps the first and the last layer,
  which such importance measures typically rank among the most important. At
  depth_fraction 1 the copy is the teacher.

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


def kept_layers(n_layers: int, depth_fraction: float) -> list[int]:
    """round(n_layers × depth_fraction) layer indices (at least 1), evenly spaced over
    0 … n_layers − 1 with the first and the last kept (when two or more are kept)."""
    if not 0 < depth_fraction <= 1:
        raise LineageError(f"depth_fraction must be in (0, 1], got {depth_fraction}")
    k = min(n_layers, max(1, round(n_layers * depth_fraction)))
    if k == 1:
        return [0]
    return sorted({round(i * (n_layers - 1) / (k - 1)) for i in range(k)})


def pruned_student(teacher, depth_fraction: float):
    """A depth-pruned float32 copy of `teacher` (module docstring): its config with fewer
    layers, every kept weight copied, nothing shared with the teacher."""
    import copy

    t_cfg = teacher.config
    text = _text_config(t_cfg)
    if text is not t_cfg:
        raise LineageError(f"pruned students are built from text-only causal LMs; {type(t_cfg).__name__} nests "
                           "its text config")
    n = int(text.num_hidden_layers)
    keep = kept_layers(n, depth_fraction)
    cfg = type(t_cfg).from_dict(t_cfg.to_dict())
    for attr in ("quantization_config", "_pre_quantization_dtype"):  # a GGUF teacher's load settings
        if hasattr(cfg, attr):
            delattr(cfg, attr)
    cfg.num_hidden_layers = len(keep)
    for per_layer in ("layer_types", "no_rope_layers", "sliding_window_pattern_layers"):
        value = getattr(cfg, per_layer, None)
        if isinstance(value, (list, tuple)) and len(value) == n:
            setattr(cfg, per_layer, [value[i] for i in keep])
    student = type(teacher)(cfg).float()
    body = teacher.get_decoder() if hasattr(teacher, "get_decoder") else teacher.base_model
    layers = getattr(body, "layers", None)
    if layers is None or len(layers) != n:
        raise LineageError(f"{type(teacher).__name__} keeps no list of {n} decoder layers at .layers: cannot prune it")
    prefix = next(name for name, mod in teacher.named_modules() if mod is layers) + "."
    state = {}
    new_index = {old: new for new, old in enumerate(keep)}
    for name, tensor in teacher.state_dict().items():
        if name.startswith(prefix):
            idx, _, rest = name[len(prefix):].partition(".")
            if int(idx) not in new_index:
                continue
            name = f"{prefix}{new_index[int(idx)]}.{rest}"
        state[name] = copy.deepcopy(tensor.detach()).float()
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in _tied_names(student)]
    if missing or unexpected:
        raise LineageError(f"pruned copy of {type(teacher).__name__} does not fit: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    if getattr(cfg, "tie_word_embeddings", False):
        student.tie_weights()
    return student.to(next(teacher.parameters()).device).eval()


def _tied_names(model) -> set[str]:
    if not getattr(model.config, "tie_word_embeddings", False):
        return set()
    head = model.get_output_embeddings()
    return {f"{name}.weight" for name, mod in model.named_modules() if mod is head}


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
    tied = _tied_names(model)  # a tied head is the embedding: stored once, tied again on load
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied}
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
    from transformers import AutoConfig, AutoModelForCausalLM

    meta = read_student_metadata(path)
    fields = json.loads(meta["config"])
    try:
        config = AutoConfig.for_model(fields.pop("model_type", "llama"), **fields)
    except ValueError as exc:
        raise LineageError(f"student config: {str(exc).splitlines()[0]}", path=path) from None
    model = AutoModelForCausalLM.from_config(config).float()
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [m for m in missing if m not in _tied_names(model)]
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    if missing or unexpected:
        raise LineageError(f"state dict does not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}",
                           path=path)
    return model.to(device).eval(), meta
