# Shared names for every stage: where results go, which code a rule depends on,
# and the list of final targets that `rule all` collects.
import ast
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

SECTIONS = ("demo", "distill", "hub", "experts", "sortgrid", "fidelity")


def validate_section(data, schema, prefix):
    """Validate (and fill defaults); report a violation as one line naming the key."""
    try:
        validate(data, schema)
    except WorkflowError as exc:
        err = exc.__context__  # the jsonschema ValidationError snakemake wrapped
        if not hasattr(err, "absolute_path"):
            raise
        key = ".".join([prefix, *map(str, err.absolute_path)]).strip(".")
        shown = schema.replace("../schemas/", "workflow/schemas/")
        raise WorkflowError(
            f"invalid config key '{key or '<top>'}': {err.message} (schema: {shown})"
        ) from None


# The top-level schema fills `results`, `seed` and an empty mapping per section;
# each section then gets its own schema, which fills that section's defaults.
# Schema paths are relative to this file.
validate_section(config, "../schemas/config.schema.yaml", "")
for _section in SECTIONS:
    validate_section(config[_section], f"../schemas/{_section}.schema.yaml", _section)

RESULTS = config["results"].rstrip("/")
SCRIPTS_DIR = Path(workflow.basedir) / "scripts"
ENVS = Path(workflow.basedir) / "envs"
envvars:
    "PATH",


# Rules run `python`: the interpreter that runs snakemake (the project's venv) comes
# first on PATH, unless --use-conda (--sdm conda) puts the per-family env's python there.
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
PY = "python"
# Each stage appends its final artifacts; `rule all` asks for all of them.
ALL_TARGETS = []


def script(name):
    """Path of a click script, named as a rule input so editing it reruns the rule."""
    return str(SCRIPTS_DIR / name)


def _local_module(name):
    """The file under scripts/ that module `name` resolves to, if it is one of ours."""
    base = SCRIPTS_DIR.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(name):
    """Every module under scripts/ that script `name` imports, directly or not, as inputs.

    Listing them makes an edit of the codec or a domain module rerun exactly the
    rules whose scripts import it (snakemake reruns on changed input content).
    """
    found, todo = set(), [SCRIPTS_DIR / name]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                for i in range(1, len(parts) + 1):  # packages' __init__ files count too
                    path = _local_module(".".join(parts[:i]))
                    if path is not None and path not in found:
                        found.add(path)
                        todo.append(path)
    return sorted(str(p) for p in found)


def as_json(obj):
    """A config section as one shell-safe JSON argument (params, so a change reruns)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def env(name):
    return str(ENVS / f"{name}.yaml")


def opt(flag, value):
    """A CLI option only when the config sets it."""
    return "" if value is None else f"{flag} {value}"


def demo_teacher_input(wildcards=None):
    """The demo teacher is a DAG node; a real teacher is a Hub id or a path (no rule)."""
    return [rules.build_demo_teacher.output[0]] if config["distill"]["teacher"] == "demo" else []


def demo_dataset_input(wildcards=None):
    return [rules.make_demo_dataset.output[0]] if config["distill"]["dataset"] == "demo" else []


wildcard_constraints:
    shard=r"\d{5}",
