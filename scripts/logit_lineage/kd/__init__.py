"""Knowledge distillation from compressed teacher logits (SPEC 2.F): sparse targets, a
dataset over shards (local or a Hub dataset repo), a collate function, sparse KD losses
and the tokenizer fingerprint check. docs/KD.md shows how training code uses them."""
from logit_lineage.formats.fingerprints import chat_template_fingerprint, check_student_tokenizer, tokenizer_fingerprint
from logit_lineage.kd.dataset import CompressedLogitsDataset, collate, conversation_input_ids
from logit_lineage.kd.losses import dense_kd_loss, hard_label_loss, kd_loss
from logit_lineage.kd.targets import SparseTargets, collate_targets, example_targets, targets_from_compressed
from logit_lineage.kd.tokenizer import teacher_tokenizer

__all__ = [
    "CompressedLogitsDataset",
    "SparseTargets",
    "chat_template_fingerprint",
    "check_student_tokenizer",
    "collate",
    "collate_targets",
    "conversation_input_ids",
    "dense_kd_loss",
    "example_targets",
    "hard_label_loss",
    "kd_loss",
    "targets_from_compressed",
    "teacher_tokenizer",
    "tokenizer_fingerprint",
]
