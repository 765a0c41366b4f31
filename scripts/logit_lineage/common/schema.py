"""The config schemas (workflow/schemas/, shipped as package data): the one home of defaults.

The workflow validates each config section with snakemake's `validate`, which also
fills the section's defaults. Library objects built from a section outside the
workflow (a script run by hand, a test) take their defaults from the same schema
through this module, with the same semantics: a default is set wherever a key is
missing, nested objects included (an object's own default, usually `{}`, is set first
and then filled from its properties), values present are left alone.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Mapping
from importlib import resources

from logit_lineage.common.errors import LineageError


@functools.lru_cache(maxsize=None)
def _load_file(name: str) -> dict:
    import yaml

    return yaml.safe_load(resources.files("logit_lineage.schemas").joinpath(name).read_text())


def _load(section: str) -> dict:
    return _load_file(f"{section}.schema.yaml")


def _resolve(node: Mapping) -> Mapping:
    """A property schema with its `$ref` (another schema file of this folder, a JSON pointer
    into it: `defs.yaml#/$defs/...`) merged in; its own keys (the default) win."""
    ref = node.get("$ref")
    if not ref:
        return node
    name, _, pointer = ref.partition("#")
    target = _load_file(name)
    for part in filter(None, pointer.split("/")):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}


@functools.lru_cache(maxsize=None)
def _registry():
    """Where a `$ref` to another schema file finds it: the package's schema folder."""
    from referencing import Registry, Resource

    return Registry(retrieve=lambda uri: Resource.from_contents(_load_file(uri)))


def load_schema(section: str) -> dict:
    """The JSON schema of one config section (`hub`, `experts`, …), as a fresh dict."""
    return copy.deepcopy(_load(section))


def _subschema(section: str, path: tuple[str, ...]) -> dict:
    node = _load(section)
    for key in path:
        try:
            node = _resolve(node["properties"][key])
        except KeyError:
            raise KeyError(f"{section}.schema.yaml has no property {'.'.join(path)}") from None
    return node


@functools.lru_cache(maxsize=None)
def _validator_class():
    # The standard recipe (jsonschema FAQ, and what snakemake.utils.validate uses):
    # the `properties` keyword first sets missing defaults, then validates them, so
    # a default object is itself filled from its own properties.
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, sub in properties.items():
                if "default" in sub:
                    # A copy: the cached schema's default must never be filled in place.
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def fill_defaults(data: Mapping | None, section: str, *path: str, check: bool = False) -> dict:
    """A copy of `data` with the defaults of schema `section` (at property `path`) filled in.

    With `check`, a value the schema refuses is a one-line LineageError naming the
    config key; without it, only defaults are set (callers that check values
    themselves keep their own messages).
    """
    filled = copy.deepcopy(dict(data or {}))
    schema = _subschema(section, path)
    validator = _validator_class()(schema, registry=_registry())
    errors = list(validator.iter_errors(filled))  # filling happens while validating
    if check and errors:
        from jsonschema.exceptions import best_match

        err = best_match(errors)
        key = ".".join([section, *path, *map(str, err.absolute_path)])
        raise LineageError(
            f"invalid config key '{key}': {err.message} (schema: workflow/schemas/{section}.schema.yaml)")
    return filled


def schema_defaults(section: str, *path: str) -> dict:
    """Every default of a section (or of the object at `path` inside it), nested ones filled."""
    return fill_defaults({}, section, *path)


def defaults_from_schema(section: str, *path: str):
    """Class decorator (under `@dataclass`): fields without a default take the schema's.

    Only annotated names that the schema object at `path` gives a default get one;
    other fields (sizes known only at run time) stay required. Mutable defaults
    become default factories.
    """
    def decorate(cls):
        defaults = schema_defaults(section, *path)
        for name in inspect.get_annotations(cls):
            if name in defaults and name not in cls.__dict__:
                value = defaults[name]
                if isinstance(value, (list, dict)):
                    setattr(cls, name, dataclasses.field(default_factory=functools.partial(copy.deepcopy, value)))
                else:
                    setattr(cls, name, value)
        return cls

    return decorate



_JSON_TYPES = {"integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),),
               "array": (list,), "object": (dict,)}


def _json_type_ok(value, types: list[str]) -> bool:
    for t in types:
        kinds = _JSON_TYPES.get(t, ())
        if isinstance(value, bool) and t in ("integer", "number"):
            continue  # YAML's `yes` is a boolean, not the number 1
        if isinstance(value, kinds):
            return True
    return False


def coerce_strings(data, schema: Mapping) -> list[str]:
    """Turn strings into the non-string types the schema asks for, in place; returns the keys changed.

    `snakemake --config distill='{"n_shards": 2000}'` reads a nested value with YAML's base
    loader, which keeps every scalar a string ('2000'); a key whose schema does not allow a
    string gets the value YAML gives that string, when that value has an allowed type.
    Anything else is left for validation to report.
    """
    import yaml

    changed: list[str] = []

    def visit(node, sub: Mapping, where: str) -> None:
        if isinstance(node, dict):
            props, extra = sub.get("properties") or {}, sub.get("additionalProperties")
            for name in list(node):
                prop = props[name] if name in props else extra
                if not isinstance(prop, Mapping):
                    continue
                key = f"{where}.{name}" if where else name
                value = node[name]
                prop = _resolve(prop)
                types = prop.get("type")
                types = [types] if isinstance(types, str) else list(types or [])
                if isinstance(value, str) and types and "string" not in types:
                    try:
                        parsed = yaml.safe_load(value)
                    except yaml.YAMLError:
                        parsed = value
                    if _json_type_ok(parsed, types):
                        node[name] = value = parsed
                        changed.append(key)
                visit(value, prop, key)
        elif isinstance(node, list) and isinstance(sub.get("items"), Mapping):
            for i, item in enumerate(node):
                visit(item, sub["items"], f"{where}[{i}]")

    visit(data, schema, "")
    return changed
