"""Load a teacher and compute its logits exactly as its own `forward` does.

A teacher is a Hub id, a `save_pretrained` directory, a `.gguf` file or a
`pkg:<package>/<file>` spec (`teacher.source`); it loads on one device or split
over several GPUs (`load_teacher(gpus=…)`).

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
from logit_lineage.teacher.source import TeacherSource, explain_load_error, resolve_teacher

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
    """The teacher's tokenizer (Hub id, directory, .gguf file or pkg: spec; see teacher.source),
    with `chat_template` (a file) replacing the tokenizer's own template when given."""
    from transformers import AutoTokenizer

    source = _resolve(name_or_path, revision)
    try:
        tok = AutoTokenizer.from_pretrained(source.location, **source.pretrained_kwargs(revision))
    except LOAD_ERRORS as exc:
        raise explain_load_error(source, "tokenizer", exc) from None
    if chat_template:
        with open(chat_template) as fh:
            tok.chat_template = fh.read()
    if not getattr(tok, "chat_template", None):
        raise LineageError(f"tokenizer '{name_or_path}' has no chat template; set distill.chat_template")
    return tok


def load_teacher(name_or_path: str, *, revision: str | None, dtype: str, device: str, gpus: int = 1,
                 device_map: dict | None = None, offload_folder: str | None = None):
    """The teacher in eval mode: on one device, or split over `gpus` CUDA devices.

    With gpus > 1 the layers are spread over cuda:0 … cuda:gpus-1 by accelerate
    (`balanced_device_map`); an explicit `device_map` (module name → device,
    "disk" with `offload_folder`) does the same with a map of one's own. Either
    way the input embedding and the lm head share the first device, where
    `decoder_hidden` delivers the hidden states, so extraction runs the head on
    kept positions only and gives the same records as a one-device load.
    """
    from transformers import AutoModelForCausalLM

    source = _resolve(name_or_path, revision)
    if gpus < 1:
        raise LineageError(f"gpus must be at least 1, got {gpus}")
    if gpus > 1:
        if device_map is not None:
            raise LineageError("give either gpus > 1 or an explicit device_map, not both")
        if device not in ("auto", "cuda"):
            raise LineageError(f"gpus={gpus} splits the teacher over CUDA devices; device '{device}' conflicts")
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available < gpus:
            raise LineageError(f"gpus={gpus} requested but {available} CUDA device(s) are visible")
        dev = torch.device("cuda:0")
    elif device_map is not None:
        dev = torch.device("cuda" if any(_is_cuda(v) for v in device_map.values()) else "cpu")
    else:
        dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    if gpus > 1:
        device_map = balanced_device_map(source, revision, torch_dtype, gpus)
    elif device_map is not None:
        device_map = head_with_inputs(_meta_model(source, revision, torch_dtype), device_map)
    kwargs = source.pretrained_kwargs(revision) | {"dtype": torch_dtype}
    if device_map is not None:
        device_map = dict(device_map)
        kwargs["device_map"] = device_map
        if "disk" in device_map.values():
            if offload_folder is None:
                raise LineageError("a device_map with 'disk' entries needs an offload_folder")
            kwargs["offload_folder"] = str(offload_folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except LOAD_ERRORS as exc:
        raise explain_load_error(source, "teacher", exc) from None
    if device_map is None:
        model.to(dev)
    else:
        check_split_model(model)
        log.info("teacher split over devices: %s", _summarize_map(getattr(model, "hf_device_map", device_map)))
    model.eval()
    return model


# What transformers raises for a missing, unreadable or unsupported checkpoint.
LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError, RuntimeError)


def _resolve(name_or_path: str, revision: str | None) -> TeacherSource:
    source = resolve_teacher(name_or_path)
    if source.is_gguf and revision:
        raise LineageError(f"teacher '{name_or_path}' is a GGUF file: teacher_revision ('{revision}') "
                           "applies to Hub ids only; set it to null")
    return source


def _is_cuda(where) -> bool:
    return isinstance(where, int) or str(where).startswith("cuda")


def _summarize_map(device_map: dict) -> str:
    counts: dict[str, int] = {}
    for where in device_map.values():
        counts[str(where)] = counts.get(str(where), 0) + 1
    return ", ".join(f"{where}: {n} module(s)" for where, n in counts.items())


def _module_name(model, module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise LineageError(f"{type(model).__name__}: embedding module not found among its submodules")


def _placement(device_map: dict, name: str):
    """The device a map gives module `name` (its own entry or the nearest enclosing one)."""
    parts = name.split(".")
    for i in range(len(parts), -1, -1):
        key = ".".join(parts[:i])
        if key in device_map:
            return device_map[key]
    return None


def head_with_inputs(model, device_map: dict) -> dict:
    """`device_map` with the lm head moved to the input embedding's device.

    The compression runs where the first parameter (the input embedding) lives
    (`extract.compress_batch` picks that device); the head's logits must be
    there too. Its weight is counted on that device by `balanced_device_map`.
    """
    embed = _module_name(model, model.get_input_embeddings())
    head = _module_name(model, model.get_output_embeddings())
    first = _placement(device_map, embed)
    if first is None:
        raise LineageError(f"device_map places no device for the input embedding '{embed}'")
    if first in ("disk", "meta"):
        raise LineageError(f"device_map puts the input embedding '{embed}' on '{first}': "
                           "it and the lm head need a compute device")
    out = dict(device_map)
    if _placement(out, head) != first:
        out[head] = first
    return out


def _meta_model(source: TeacherSource, revision: str | None, torch_dtype: torch.dtype):
    """The teacher's module tree with no weights (for planning a device map)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(source.location, **source.pretrained_kwargs(revision))
    except LOAD_ERRORS as exc:
        raise explain_load_error(source, "teacher config", exc) from None
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    meta.tie_weights()  # a tied head is the embedding: it must not be counted (or placed) twice
    return meta


def balanced_device_map(source: TeacherSource, revision: str | None, torch_dtype: torch.dtype, gpus: int) -> dict:
    """Layers spread evenly over cuda:0 … cuda:gpus-1 (accelerate's "balanced"), whole decoder
    layers per device, the lm head beside the input embedding (`head_with_inputs`). An untied
    head moved there is counted: if that device would then hold more than 90 % of its free
    memory, its share shrinks by the head's size and the map is made again."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes, get_balanced_memory

    meta = _meta_model(source, revision, torch_dtype)
    no_split = list(getattr(meta, "_no_split_modules", None) or [])
    free = {i: torch.cuda.mem_get_info(i)[0] for i in range(gpus)}
    budget = get_balanced_memory(meta, max_memory=dict(free), no_split_module_classes=no_split, dtype=torch_dtype)
    sizes = compute_module_sizes(meta, dtype=torch_dtype)
    head = _module_name(meta, meta.get_output_embeddings())
    for _ in range(2):
        device_map = head_with_inputs(meta, infer_auto_device_map(
            meta, max_memory=budget, no_split_module_classes=no_split, dtype=torch_dtype))
        first = device_map[head] if head in device_map else _placement(device_map, head)
        used = sum(sizes.get(name, 0) for name, where in device_map.items() if where == first)
        if first not in free or used <= 0.9 * free[first]:
            break
        budget[first] = max(0, budget[first] - sizes.get(head, 0))
    return device_map


def check_split_model(model) -> None:
    """A model loaded with a device map: input embedding and lm head on the same real device."""
    embed = model.get_input_embeddings().weight.device
    head = model.get_output_embeddings().weight.device
    first = next(model.parameters()).device
    if embed != first or head != first or first.type == "meta":
        raise LineageError(
            f"teacher split badly: input embedding on {embed}, lm head on {head}, first parameter on {first}; "
            "they must share one compute device (see teacher.load.head_with_inputs)")


def decoder_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Final hidden states [B, T, H] of the decoder body (no lm head), on the device of
    `input_ids` (where the lm head sits; a model split over devices ends elsewhere)."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    out = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden.to(input_ids.device)


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
