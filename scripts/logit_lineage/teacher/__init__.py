"""The shared teacher layer: where a teacher comes from (`source`), loading it and
computing its logits exactly as its own forward does (`load`), conversation datasets
(`data`), chat tokenization with the mask of kept positions (`chat`) and token-budget
batches (`batching`). Every chain that runs a teacher (distillation, fidelity, the
student's online targets) and `kd` use these; nothing here imports a chain."""
