"""The library's shape: no import cycles; layers import only the layers below them
(`common` < `formats` < `teacher` < `kd` < the chains, and no chain imports another);
the reader needs numpy and pyarrow only; chains keep one name everywhere."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PKG = REPO / "scripts" / "logit_lineage"
CHAINS = ("demo", "distill", "hub", "experts", "sortgrid", "fidelity", "student")

def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Modules of ours that a file imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("logit_lineage"):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py") if "schemas" not in p.parts}
    edges = {}
    for mod, path in files.items():
        deps = set()
        for name in imports_of(path):
            while name and name not in files:  # `from pkg import name` names a symbol
                name = name.rpartition(".")[0]
            if name and name != mod and not mod.startswith(name + "."):
                deps.add(name)
        edges[mod] = deps
    return edges


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if dep.startswith(node + "."):
                continue  # a package's __init__ re-exporting its own modules
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def layer(mod: str) -> str:
    """The subpackage a module belongs to (`kd`, `formats`, a chain…); "" for the package itself."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_across(importer: str, edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, imported module) for the imports of layer `importer`'s modules from other
    layers; the layer must have modules (no rule passes vacuously)."""
    mods = [m for m in edges if layer(m) == importer]
    assert mods, f"no logit_lineage.{importer} package"
    return sorted((m, d) for m in mods for d in edges[m] if layer(d) != importer)


def check_layer(importer: str, may_import: set[str], edges: dict[str, set[str]]) -> list[str]:
    return [f"{m} -> {d}" for m, d in imports_across(importer, edges) if layer(d) not in may_import]


@pytest.mark.parametrize("chain", CHAINS)
def test_chains_import_no_other_chain(chain):
    bad = [f"{m} -> {d}" for m, d in imports_across(chain, graph()) if layer(d) in CHAINS]
    assert not bad, f"chain {chain} imports another chain: {bad}"


def test_kd_imports_formats_common_and_teacher_only():
    bad = check_layer("kd", {"common", "formats", "teacher"}, graph())
    assert not bad, f"kd imports beyond common, formats and teacher: {bad}"


def test_teacher_imports_common_and_formats_only():
    bad = check_layer("teacher", {"common", "formats"}, graph())
    assert not bad, f"teacher imports beyond common and formats: {bad}"


def test_formats_import_no_chain_kd_teacher_or_cli():
    bad = [f"{m} -> {d}" for m, d in imports_across("formats", graph())
           if layer(d) in CHAINS + ("kd", "teacher", "cli")]
    assert not bad, f"formats imports chain, kd, teacher or cli modules: {bad}"


def test_reader_imports_numpy_and_pyarrow_only():
    probe = ("import sys; import logit_lineage; from logit_lineage import LogitsShard, token_distributions; "
             "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pandas', 'snakemake') if m in sys.modules]; "
             "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_one_name_per_chain():
    rules = {p.stem for p in (REPO / "workflow" / "rules").glob("*.smk")}
    schemas = {p.name.split(".")[0] for p in (REPO / "workflow" / "schemas").glob("*.schema.yaml")}
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    for chain in CHAINS:
        assert chain in rules, f"no workflow/rules/{chain}.smk"
        assert chain in schemas, f"no workflow/schemas/{chain}.schema.yaml"
        assert chain in packages, f"no logit_lineage.{chain} package"
    old = {"codec", "common", "longtail", "sortgpt", "analysis"} & {p.name for p in (REPO / "scripts").iterdir()}
    assert not old, f"old top-level module folders under scripts/: {old}"
