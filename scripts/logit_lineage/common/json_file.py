"""Reading a JSON file that the workflow wrote, with the one-line errors every reader gives."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from logit_lineage.common.errors import LineageError


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The parsed content of `path`; a missing, truncated or corrupt file is one LineageError
    naming the file and what it should have been."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LineageError(f"no such {what}", path=path) from None
    except json.JSONDecodeError as exc:
        raise LineageError(f"not valid JSON ({exc.msg} at line {exc.lineno}): truncated or corrupt {what}",
                           path=path) from None
    except UnicodeDecodeError:
        raise LineageError(f"not valid JSON (not UTF-8 text): corrupt {what}", path=path) from None
