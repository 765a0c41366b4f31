"""The student chain: a small student trained from the teacher's logits with four targets
(dense teacher, compressed shards, renormalised nucleus, true tokens), evaluated on held-out
examples against the dense teacher, and tabulated over seeds. docs/STUDENT.md.

Modules: `model` (the student's config and checkpoint file), `data` (examples from the
shards, the held-out split, the batch order), `train` (one method's training loop),
`evaluate` (held-out KL / CE / top-1 against the teacher), `eval_file` (the per-run JSON),
`table` (the table, the summary with the gap closed, the plot).
"""

# The four targets, in the order tables and plots show them (no imports here: the workflow
# reads this while it builds the DAG).
METHODS = ("dense", "compressed", "topk", "sft")
# The methods that learn from the shards' values (their runs have a bytes-per-token figure).
SHARD_METHODS = ("compressed", "topk")
