# logit-lineage: one file DAG for compressed teacher logits, long-tail experts,
# sort-grid checkpoints and dense logit dumps. Only config loading, validation,
# includes and `rule all` live here; every stage is a file in workflow/rules/.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: Path(workflow.basedir) / "config" / "config.yaml"


SECTIONS = ("demo", "distill", "hub", "experts", "sortgrid", "fidelity")

# The top-level schema fills `results`, `seed` and an empty mapping per section;
# each section then gets its own schema (paths are relative to this file), which fills that section's defaults.


def validate_section(data, schema, prefix):
    """Validate (and fill defaults); report a violation as one line naming the key."""
    try:
        validate(data, schema)
    except WorkflowError as exc:
        err = exc.__context__  # the jsonschema ValidationError snakemake wrapped
        if not hasattr(err, "absolute_path"):
            raise
        key = ".".join([prefix, *map(str, err.absolute_path)]).strip(".")
        raise WorkflowError(
            f"invalid config key '{key or '<top>'}': {err.message} (schema: {schema})"
        ) from None


validate_section(config, "workflow/schemas/config.schema.yaml", "")
for _section in SECTIONS:
    validate_section(config[_section], f"workflow/schemas/{_section}.schema.yaml", _section)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/experts.smk"
include: "workflow/rules/sortgrid.smk"
include: "workflow/rules/fidelity.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
    localrule: True
