"""Atomic writes: complete new file or untouched old file, never a partial one."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cascade_explorer.core import atomic
from cascade_explorer.core.atomic import (atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_text,
                                          is_temp_name)


def _temp_files(folder):
    return [p.name for p in folder.iterdir() if is_temp_name(p.name)]


def test_round_trips(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "t.txt", "héllo\nworld\r\n")
    atomic_write_json(tmp_path / "j.json", {"a": [1, 2.5, None], "ü": "x"})
    array = np.arange(12, dtype=np.float16).reshape(3, 4)[:, ::2]   # non-contiguous view
    atomic_save_npy(tmp_path / "a.npy", array)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_bytes() == "héllo\nworld\r\n".encode()
    assert json.loads((tmp_path / "j.json").read_text(encoding="utf-8")) == {"a": [1, 2.5, None], "ü": "x"}
    loaded = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert loaded.dtype == np.float16 and np.array_equal(loaded, array)
    assert _temp_files(tmp_path) == []


def test_creates_parent_folders_and_readable_permissions(tmp_path):
    path = atomic_write_text(tmp_path / "x" / "y" / "f.txt", "1")
    assert path.read_text() == "1"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_overwrite_replaces_whole_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "a much longer old content")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "data.npy"
    atomic_save_npy(path, np.zeros(3))

    class Boom(Exception):
        pass

    def failing_write(handle):
        handle.write(b"partial")
        raise Boom

    with pytest.raises(Boom):
        atomic._atomic_write(path, failing_write)
    assert np.array_equal(np.load(path, allow_pickle=False), np.zeros(3))
    assert _temp_files(tmp_path) == []


def test_interrupt_during_replace_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"v": 1})

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _temp_files(tmp_path) == []


def test_killed_writer_leaves_only_a_recognisable_temp_file(tmp_path):
    # A process killed between writing the temp file and the rename (os._exit skips every cleanup).
    path = tmp_path / "x.npy"
    atomic_save_npy(path, np.ones(4))
    script = textwrap.dedent(f"""
        import os, numpy as np
        from cascade_explorer.core import atomic
        atomic.os.replace = lambda *a: os._exit(9)
        atomic.atomic_save_npy({str(path)!r}, np.zeros(1000))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == 9
    leftovers = _temp_files(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".x.npy.tmp-")
    assert not leftovers[0].endswith(".npy")   # a *.npy glob never picks it up
    assert np.array_equal(np.load(path, allow_pickle=False), np.ones(4))


def test_refuses_object_arrays_and_nan_json(tmp_path):
    with pytest.raises(ValueError, match="object array"):
        atomic_save_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_is_temp_name():
    assert is_temp_name(".labels.npy.tmp-abc123")
    assert not is_temp_name("labels.npy")
    assert not is_temp_name(".hidden")
