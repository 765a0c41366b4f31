# Shared names for every stage: where results go, which code a rule depends on,
# and the list of final targets that `rule all` collects.
import ast
import functools
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

from logit_lineage.common.errors import LineageError
from logit_lineage.common.locations import is_path_like, require_existing_path
from logit_lineage.common.schema import coerce_strings, load_schema
from logit_lineage.formats.params import CompressionParams

SECTIONS = ("demo", "distill", "hub", "experts", "sortgrid", "fidelity", "student")


def validate_section(data, schema, prefix):
    """Validate (and fill defaults); report a violation as one line naming the key.

    `--config section='{"key": 2000}'` arrives with string scalars ('2000'): a string
    where the schema wants a number, boolean or null first becomes what YAML reads it as.
    """
    coerce_strings(data, load_schema(Path(schema).name.removesuffix(".schema.yaml")))
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


def check_local_path(key, value):
    """A config value that can only be a local path must exist when the workflow is parsed
    (a dry run says so), not only when a job hands it to `from_pretrained`."""
    if value is None or not is_path_like(value):
        return
    try:
        require_existing_path(value, "path")
    except LineageError as exc:
        raise WorkflowError(f"invalid config key '{key}': {exc}") from None


RESULTS = config["results"].rstrip("/")
SCRIPTS_DIR = Path(workflow.basedir) / "scripts"
# Every click script by name; a rule passes its own as params.script=SCRIPT["<name>"].
SCRIPT = {p.stem: str(p) for p in SCRIPTS_DIR.glob("*.py")}
ENVS = Path(workflow.basedir) / "envs"


envvars:
    "PATH",


# Rules run `python`: the interpreter that runs snakemake (the project's venv) comes
# first on PATH, unless --use-conda (--sdm conda) puts the per-family env's python there.
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    os.environ["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
PY = "python"
# Each stage appends its final artifacts; `rule all` asks for all of them.
ALL_TARGETS = []


def q(value):
    """A value as one shell word: paths with spaces, apostrophes or `$` go through intact."""
    return shlex.quote(str(value))


def opt(flag, value):
    """A CLI option, quoted, only when the config sets it."""
    return "" if value is None else f"{flag} {q(value)}"


def logs(path):
    """Every rule's log lands under {results}/logs/<chain>/…"""
    return f"{RESULTS}/logs/{path}"


def benchmarks(path):
    """…and its benchmark under {results}/benchmarks/<chain>/…"""
    return f"{RESULTS}/benchmarks/{path}"


def code(name):
    """A rule's code input: the fingerprint of its click script and of every module it imports.

    One fingerprint file per script (rule code_fingerprint, local) stands for the script and
    the ~15 modules behind it, so a job lists one code input, not sixteen (dry runs at 10,000
    shards stay cheap), while editing the script or a module still reruns exactly the rules
    whose scripts use it: the fingerprint job reruns and is newer than their outputs. The
    script itself is a param (SCRIPT["<name>"]), not a second input.
    """
    stem = Path(name).stem
    if stem not in SCRIPT:
        raise WorkflowError(f"code({name!r}): no such script in {SCRIPTS_DIR}")
    return {"code": f"{RESULTS}/code/{stem}.sha256"}


def compress_args(settings):
    """extract_logits.py's compression options from a config section that holds the
    compression parameters (distill, or a student.formats entry: CompressionParams);
    --format-version only when not 2, the script's default (a v2 job's command stays as it was).
    """
    c = CompressionParams.from_config(settings)
    return (
        f"--top-p {c.top_p} --top-p-max-elements {c.top_p_max_elements} "
        f"--sampled-n {c.sampled_n} --seed {config['seed']} "
        + opt("--format-version", None if c.format_version == 2 else c.format_version)
    )


@functools.cache
def _local_module(name):
    """The file under scripts/ that module `name` resolves to, if it is one of ours."""
    base = SCRIPTS_DIR.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _statements(body):
    """Every statement in `body`, nested ones too (an import is a statement: expressions, the
    bulk of a module's nodes, need no visit)."""
    todo = list(body)
    while todo:
        node = todo.pop()
        yield node
        for _, value in ast.iter_fields(node):
            if isinstance(value, list):
                for child in value:
                    if isinstance(child, ast.stmt):
                        todo.append(child)
                    elif isinstance(child, (ast.excepthandler, ast.match_case)):
                        todo.extend(child.body)


@functools.cache
def _direct_imports(path):
    """Our modules that the file at `path` imports itself (packages' __init__ files too)."""
    found = set()
    for node in _statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                dep = _local_module(".".join(parts[:i]))
                if dep is not None:
                    found.add(dep)
    return frozenset(found)


def imports(name):
    """Script `name` and every module of ours it imports, directly or not (sorted paths)."""
    first = SCRIPTS_DIR / name
    found, todo = {first}, [first]
    while todo:
        for dep in _direct_imports(todo.pop()) - found:
            found.add(dep)
            todo.append(dep)
    return sorted(str(p) for p in found)


def as_json(obj):
    """A config section as one JSON argument (params, so a change reruns); quote it with :q."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def env(name):
    return str(ENVS / f"{name}.yaml")


wildcard_constraints:
    shard=r"\d{5}",
    script=r"[a-z_]+",


# Lists of per-shard files (name → path template with {shard}), filled by the chain files:
# an aggregate rule takes one list as input and reads the paths from it (`--logits @LIST`),
# so a job lists one file instead of one per shard (dry runs at 10,000 shards stay cheap)
# and its shell command stays short (a shell command is limited to 128 KiB).
SHARD_LISTS = {}


def shard_list(name, template):
    """The list file of `template`'s files over every shard (rule list_paths)."""
    SHARD_LISTS[name] = template
    return f"{RESULTS}/lists/{name}.list"
