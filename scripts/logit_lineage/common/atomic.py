"""Atomic outputs: write to a temporary sibling, then rename over the target.

A job that fails part-way leaves no file that looks finished, because the final
name only ever appears through `os.replace`, which is atomic on POSIX.

`tempfile.mkstemp` creates its file 0600 and `mkdtemp` its folder 0700, whatever the
umask: renamed into place as they are, every output would be private, and on a
cluster's shared filesystem collaborators (or an upload job under another account)
could not read them. Before the rename each output gets the mode any other new file
gets under the user's umask (0644 / 0755 under umask 022).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else
    by setting and restoring it under a lock (the only portable way to read it)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def umask_mode(*, directory: bool = False) -> int:
    """The mode `open()` (0666) or `mkdir()` (0777) gives a new file under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def _publish_tree(root: Path) -> None:
    """Give `root` (made by mkdtemp, 0700) and any file or folder inside that a writer
    made private with mkstemp/mkdtemp the umask's mode; looser modes are left as they are."""
    dir_mode, file_mode = umask_mode(directory=True), umask_mode()
    os.chmod(root, dir_mode)
    for folder, dirs, files in os.walk(root):
        for name, mode in [(d, dir_mode) for d in dirs] + [(f, file_mode) for f in files]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if not os.path.islink(path) and (st.st_mode & 0o777) & mode != mode:
                os.chmod(path, (st.st_mode & 0o777) | mode)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it to `target`.

    The temporary name keeps the target's suffix (libraries such as pyarrow or
    matplotlib pick a format from it). On an exception the temporary is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # Whatever the writer did with the temporary (rewrote it, replaced it), the
        # output gets the umask's mode, not mkstemp's 0600.
        os.chmod(tmp_path, umask_mode())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it becomes `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        _publish_tree(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike, obj: object) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")
