"""Conversations whose assistant text no one in this project wrote, from a source on every
machine offline: the docstrings of installed packages, turned into question → answer pairs.

    user:      What does `pandas.DataFrame.merge` do?
    assistant: <its docstring, cleaned, cut at a paragraph end to at most max_chars>

Objects are the public functions and classes of each package (its `__all__`, else the
public names of its namespace) and the public methods of those classes, named by where
they were found (`package.Class.method`). Docstrings shorter than `min_chars`, repeated
(the same text under two names: aliases, inherited methods) or not mostly text are left
out. From the candidates, sorted by name, `n` are drawn with numpy's PCG64(seed) and kept
in name order: the same package versions and settings give the same conversations.
"""
from __future__ import annotations

import importlib
import inspect
import re

import numpy as np

from logit_lineage.common.errors import LineageError

DEFAULT_PACKAGES = ("numpy", "pandas", "pyarrow", "click", "jsonschema", "torch.nn", "torch.optim",
                    "datasets", "huggingface_hub")


def clean_docstring(doc: str | None, *, max_chars: int) -> str | None:
    """The docstring's leading paragraphs, at most max_chars (cut at a paragraph end, else a
    line end), or None when it is empty or not mostly text (tables, bare signatures)."""
    if not doc:
        return None
    text = inspect.cleandoc(doc).strip()
    if len(text) > max_chars:
        cut = text.rfind("\n\n", 0, max_chars)
        if cut < max_chars // 3:
            cut = text.rfind("\n", 0, max_chars)
        text = text[: cut if cut > 0 else max_chars].rstrip()
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    if not text or letters < 0.7 * len(text):
        return None
    return text


def _public(names) -> list[str]:
    return sorted(n for n in names if isinstance(n, str) and not n.startswith("_"))


def candidates(package: str, *, max_chars: int, min_chars: int) -> dict[str, str]:
    """qualified name → cleaned docstring for one package's public functions, classes and
    their public methods."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise LineageError(f"package '{package}' is not installed ({exc})") from None
    out: dict[str, str] = {}

    def add(name, obj):
        try:
            doc = clean_docstring(inspect.getdoc(obj) if not isinstance(obj, type) else obj.__doc__,
                                  max_chars=max_chars)
        except Exception:  # noqa: BLE001 - some objects' __doc__ raises on access
            return
        if doc and len(doc) >= min_chars:
            out[name] = doc

    names = getattr(module, "__all__", None) or dir(module)
    for name in _public(names):
        try:
            obj = getattr(module, name)
        except Exception:  # noqa: BLE001 - lazy attributes may fail to import
            continue
        if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)
                or type(obj).__name__ == "ufunc"):
            continue
        add(f"{package}.{name}", obj)
        if inspect.isclass(obj):
            for meth in _public(vars(obj)):  # methods defined on the class itself
                member = vars(obj)[meth]
                if inspect.isfunction(member) or inspect.ismethoddescriptor(member) or isinstance(
                        member, (classmethod, staticmethod, property)):
                    add(f"{package}.{name}.{meth}", getattr(member, "__func__", member))
    return out


def docstring_conversations(packages=DEFAULT_PACKAGES, *, n: int, seed: int, max_chars: int = 1200,
                            min_chars: int = 200) -> list[list[dict]]:
    """n [user, assistant] conversations (module docstring); refused when fewer candidates."""
    pool: dict[str, str] = {}
    seen_text: set[str] = set()
    for package in packages:
        for name, doc in sorted(candidates(package, max_chars=max_chars, min_chars=min_chars).items()):
            key = re.sub(r"\s+", " ", doc)
            if key in seen_text or name in pool:
                continue
            seen_text.add(key)
            pool[name] = doc
    names = sorted(pool)
    if len(names) < n:
        raise LineageError(f"{len(names)} documented objects in {', '.join(packages)}, {n} asked "
                           "(add packages or lower min_chars)")
    picked = np.sort(np.random.Generator(np.random.PCG64(seed)).choice(len(names), size=n, replace=False))
    return [[{"role": "user", "content": f"What does `{names[i]}` do?"},
             {"role": "assistant", "content": pool[names[i]]}] for i in picked]


__all__ = ["DEFAULT_PACKAGES", "candidates", "clean_docstring", "docstring_conversations"]
