"""Knowledge distillation from compressed teacher logits: sparse targets, a
dataset over shards (local or a Hub dataset repo), a collate function, sparse KD losses
and the tokenizer fingerprint check. docs/KD.md shows how training code uses them.

`KDTrainer` and `KDDataCollator` (`kd.trainer`, a `transformers.Trainer` subclass) are
imported on first use, so `import logit_lineage.kd` does not import transformers."""
from logit_lineage.formats.fingerprints import chat_template_fingerprint, check_student_tokenizer, tokenizer_fingerprint
from logit_lineage.kd.dataset import CompressedLogitsDataset, collate, conversation_input_ids
from logit_lineage.kd.dense import DenseLogits
from logit_lineage.kd.fused import hard_label_loss_from_hidden, kd_loss_from_hidden
from logit_lineage.kd.losses import dense_kd_loss, hard_label_loss, kd_loss
from logit_lineage.kd.online import compressed_records, shard_params, sparse_targets
from logit_lineage.kd.targets import SparseTargets, collate_targets, example_targets, targets_from_compressed
from logit_lineage.kd.tokenizer import teacher_tokenizer

_LAZY = {"KDTrainer": "logit_lineage.kd.trainer", "KDDataCollator": "logit_lineage.kd.trainer",
         "gradient_yardstick": "logit_lineage.kd.yardstick"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'logit_lineage.kd' has no attribute {name!r}")


__all__ = [
    "CompressedLogitsDataset",
    "DenseLogits",
    "KDDataCollator",
    "KDTrainer",
    "SparseTargets",
    "chat_template_fingerprint",
    "check_student_tokenizer",
    "collate",
    "collate_targets",
    "compressed_records",
    "conversation_input_ids",
    "dense_kd_loss",
    "example_targets",
    "gradient_yardstick",
    "hard_label_loss",
    "hard_label_loss_from_hidden",
    "kd_loss",
    "kd_loss_from_hidden",
    "shard_params",
    "sparse_targets",
    "targets_from_compressed",
    "teacher_tokenizer",
    "tokenizer_fingerprint",
]
