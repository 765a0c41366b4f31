"""Training one sort-grid run: AdamW, linear warmup then cosine decay, seeded data."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import defaults_from_schema
from logit_lineage.sortgrid.checkpoint import save_sort_checkpoint
from logit_lineage.sortgrid.data import LengthSampler, inputs_and_targets, sample_sequences
from logit_lineage.sortgrid.model import SortGPT, SortModelConfig
from logit_lineage.sortgrid.names import CheckpointName

log = logging.getLogger("logit_lineage")


@dataclass(frozen=True)
@defaults_from_schema("sortgrid", "training")  # max_iters … log_every: the defaults' one home, the schema
class TrainSettings:
    max_iters: int
    batch_size: int
    learning_rate: float
    min_lr: float
    warmup_iters: int
    weight_decay: float
    grad_clip: float
    betas: tuple[float, float] = (0.9, 0.95)  # not a config key
    log_every: int
    # Not the config's [250]: the caller names its intermediate checkpoints (none by default).
    checkpoint_iters: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_iters < 1 or self.batch_size < 1:
            raise LineageError(f"max_iters and batch_size must be >= 1, got {self.max_iters}, {self.batch_size}")
        for it in self.checkpoint_iters:
            if not 1 <= it < self.max_iters:
                raise LineageError(
                    f"intermediate checkpoint at iteration {it} is outside 1..{self.max_iters - 1} "
                    f"(the Final checkpoint is written at {self.max_iters})"
                )
        if self.min_lr > self.learning_rate:
            raise LineageError(f"min_lr {self.min_lr} exceeds learning_rate {self.learning_rate}")


def lr_at(it: int, s: TrainSettings) -> float:
    """Learning rate for step `it` (0-based): linear warmup, cosine decay to min_lr at max_iters."""
    if it < s.warmup_iters:
        return s.learning_rate * (it + 1) / s.warmup_iters
    span = max(1, s.max_iters - s.warmup_iters)
    progress = min(1.0, (it - s.warmup_iters) / span)
    return s.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (s.learning_rate - s.min_lr)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise LineageError(f"--device {spec!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LineageError(f"--device {spec}: CUDA is not available on this machine")
    return device


def model_config_for(name: CheckpointName) -> SortModelConfig:
    return SortModelConfig(
        vocab_n=name.vocab_n,
        n_embd=name.n_embd,
        n_heads=name.n_heads,
        n_layers=name.n_layers,
        use_mlp=name.use_mlp,
        use_layernorm=name.use_layernorm,
        without_pos=name.without_pos,
        max_seq_len=2 * max(name.test_max_k, name.train_max_k) + 1,
    )


def make_optimizer(model: torch.nn.Module, s: TrainSettings, device: torch.device) -> torch.optim.AdamW:
    # Matrices decay; norms' gains and biases do not (the nanoGPT convention).
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=s.learning_rate, betas=s.betas, fused=device.type == "cuda"
    )


def run_config(name: CheckpointName, s: TrainSettings, seed: int, extra: dict | None = None) -> dict:
    """Everything that defines the run, as plain data (stored as the checkpoint's `config`)."""
    cfg = model_config_for(name).to_dict()
    settings = asdict(s)
    settings["betas"] = list(s.betas)
    settings["checkpoint_iters"] = list(s.checkpoint_iters)
    cfg.update(settings)
    cfg.update(
        length_mode=name.length_mode,
        train_min_k=name.train_min_k,
        train_max_k=name.train_max_k,
        test_min_k=name.test_min_k,
        test_max_k=name.test_max_k,
        allow_duplicates=not name.no_duplicates,
        seed=seed,
        name_stem=name.stem,
        torch_version=str(torch.__version__),
    )
    cfg.update(extra or {})
    return cfg


@dataclass
class TrainResult:
    iters: int
    seconds: float
    final_loss: float

    @property
    def iters_per_second(self) -> float:
        return self.iters / self.seconds if self.seconds > 0 else float("inf")


def train_run(
    name: CheckpointName,
    settings: TrainSettings,
    *,
    seed: int,
    device: torch.device,
    outputs: dict[int, Path],
    extra_config: dict | None = None,
) -> TrainResult:
    """Train from scratch; write a checkpoint for every iteration count in `outputs`.

    `outputs` maps iters_done -> path; it must hold settings.max_iters (the Final file).
    """
    if settings.max_iters not in outputs:
        raise LineageError(f"no output for the final iteration {settings.max_iters}")
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = SortGPT(model_config_for(name)).to(device)
    optimizer = make_optimizer(model, settings, device)
    lengths = LengthSampler(name.length_mode, name.train_min_k, name.train_max_k, settings.max_iters)
    k_gen = torch.Generator().manual_seed(seed + 1)
    data_gen = torch.Generator(device=device).manual_seed(seed + 2)
    config = run_config(name, settings, seed, extra_config)

    log.info(
        "training %s seed %d on %s: %d params, %d iterations, batch %d",
        name.stem, seed, device, sum(p.numel() for p in model.parameters()),
        settings.max_iters, settings.batch_size,
    )
    model.train()
    start = time.perf_counter()
    last_log_t, last_log_it = start, 0
    loss = torch.zeros((), device=device)
    for it in tqdm(range(settings.max_iters), desc="train", mininterval=10, disable=None):
        lr = lr_at(it, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        k = lengths.sample(it, k_gen)
        seq = sample_sequences(
            settings.batch_size, k, name.vocab_n,
            distinct=name.no_duplicates, generator=data_gen, device=device,
        )
        inputs, targets, k = inputs_and_targets(seq)
        logits = model(inputs, predict_from=k)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        done = it + 1
        if settings.log_every and (done % settings.log_every == 0 or done == settings.max_iters):
            now = time.perf_counter()
            rate = (done - last_log_it) / max(now - last_log_t, 1e-9)
            log.info("iter %d/%d loss %.4f lr %.2e K=%d %.1f it/s", done, settings.max_iters, loss.item(), lr, k, rate)
            last_log_t, last_log_it = now, done
        if done in outputs:
            save_sort_checkpoint(
                outputs[done],
                model_state_dict=model.state_dict(),
                optimizer_state_dict=optimizer.state_dict(),
                config=config,
                iters_done=done,
            )
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return TrainResult(settings.max_iters, seconds, float(loss.item()))
