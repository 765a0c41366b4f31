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
def _load(section: str) -> dict:
    import yaml

    text = resources.files("logit_lineage.schemas").joinpath(f"{section}.schema.yaml").read_text()
    return yaml.safe_load(text)


def load_schema(section: str) -> dict:
    """The JSON schema of one config section (`hub`, `experts`, …), as a fresh dict."""
    return copy.deepcopy(_load(section))


def _subschema(section: str, path: tuple[str, ...]) -> dict:
    node = _load(section)
    for key in path:
        try:
            node = node["properties"][key]
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
    validator = _validator_class()(schema)
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

