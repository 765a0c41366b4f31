# logit-lineage: one file DAG for compressed teacher logits, the students trained on
# them, long-tail experts, sort-grid checkpoints and dense logit dumps. Only config loading, validation,
# includes and `rule all` live here; every stage is a file in workflow/rules/.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config" / "config.yaml"


# common.smk validates the config (filling defaults) before any stage reads it.
include: "workflow/rules/common.smk"
include: "workflow/rules/code.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/experts.smk"
include: "workflow/rules/sortgrid.smk"
include: "workflow/rules/fidelity.smk"
include: "workflow/rules/student.smk"


# Plain strings: an input that names other rules' outputs makes snakemake hash the whole
# input list once per file, quadratic in the shard count.
rule all:
    default_target: True
    input:
        [str(target) for target in ALL_TARGETS],
    localrule: True
