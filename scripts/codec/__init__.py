"""Every on-disk format of logit-lineage, and nothing else."""
