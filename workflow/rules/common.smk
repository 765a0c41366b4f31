# Shared names for every stage: where results go, which code a rule depends on,
# and the list of final targets that `rule all` collects.
import json
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

RESULTS = config["results"].rstrip("/")
SCRIPTS_DIR = Path(workflow.basedir) / "scripts"
ENVS = Path(workflow.basedir) / "envs"
# Scripts run with the interpreter that runs snakemake (the project's venv), unless
# --use-conda (or --sdm conda) asks for the per-family envs in envs/.
PY = (
    "python"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else sys.executable
)
# Each stage appends its final artifacts; `rule all` asks for all of them.
ALL_TARGETS = []


def script(name):
    """Path of a click script, named as a rule input so editing it reruns the rule."""
    return str(SCRIPTS_DIR / name)


def deps(*packages):
    """The shared packages a script imports (codec and common always), as inputs.

    Listing them as input makes an edit of the codec or of a domain package
    rerun exactly the rules that depend on it.
    """
    files = []
    for package in ("codec", "common") + packages:
        files.extend(sorted((SCRIPTS_DIR / package).glob("*.py")))
    return [str(f) for f in files]


def as_json(obj):
    """A config section as one shell-safe JSON argument (params, so a change reruns)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def env(name):
    return str(ENVS / f"{name}.yaml")


wildcard_constraints:
    shard=r"\d{5}",
