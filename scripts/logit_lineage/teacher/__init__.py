"""The shared teacher layer: where a teacher comes from (`source`), loading it and
computing its logits exactly as its own forward does (`load`), conversation datasets
(`data`), chat tokenization with the mask of kept positions (`chat`), token-budget batches
(`batching`), and the codec that compresses its logits (`compress`: the nucleus rule and the
tail sampler), which extraction, online targets and the student's evaluation share. Every
chain that runs a teacher (distillation, fidelity, the student's online targets) and `kd`
use these; nothing here imports a chain."""
