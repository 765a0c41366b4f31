"""Outputs get the mode the user's umask gives, not the 0600 / 0700 of a temporary file.

On a cluster's shared filesystem collaborators read what a job writes; every writer
goes through `atomic_path` / `atomic_dir`, whose temporaries `tempfile` makes private.
"""
from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.common.atomic import atomic_dir, atomic_path, current_umask, write_json, write_text

UMASKS = st.sampled_from([0o022, 0o002, 0o027, 0o077, 0o000, 0o007])


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class umask_set:
    def __init__(self, mask: int):
        self.mask = mask

    def __enter__(self):
        self.old = os.umask(self.mask)

    def __exit__(self, *exc):
        os.umask(self.old)


@settings(max_examples=12, deadline=None)
@given(mask=UMASKS)
def test_atomic_outputs_get_the_umask_mode(mask):
    with tempfile.TemporaryDirectory() as tmp, umask_set(mask):
        assert current_umask() == mask
        write_text(f"{tmp}/a.txt", "x")
        write_json(f"{tmp}/sub/b.json", {"k": 1})
        with atomic_path(f"{tmp}/c.parquet") as out:
            pq.write_table(pa.table({"x": [1, 2]}), out)
        with atomic_path(f"{tmp}/d.npz") as out, open(out, "wb") as fh:
            np.savez_compressed(fh, x=np.arange(3))
        with atomic_dir(f"{tmp}/model") as folder:
            (folder / "config.json").write_text("{}")
            fd, private = tempfile.mkstemp(dir=folder)  # a writer that made its own 0600 file
            os.close(fd)
            (folder / "nested").mkdir()
        expected_file, expected_dir = 0o666 & ~mask, 0o777 & ~mask
        for name in ("a.txt", "sub/b.json", "c.parquet", "d.npz", "model/config.json", f"model/{os.path.basename(private)}"):
            assert mode(f"{tmp}/{name}") == expected_file, (name, oct(mode(f"{tmp}/{name}")), oct(mask))
        for name in ("model", "model/nested"):
            assert mode(f"{tmp}/{name}") == expected_dir, (name, oct(mode(f"{tmp}/{name}")), oct(mask))


def test_failed_write_leaves_nothing(tmp_path):
    try:
        with atomic_path(tmp_path / "x.txt") as out:
            out.write_text("partial")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
