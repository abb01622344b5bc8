"""Atomic writes: complete files with the usual permissions, nothing lost on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reluscope.errors import InputError
from reluscope.io import atomic_write, file_inside


def test_written_file_has_umask_permissions(tmp_path: Path):
    old = os.umask(0o022)
    try:
        out = atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("hello"))
    finally:
        os.umask(old)
    assert out.read_text() == "hello"
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failure_keeps_the_existing_file_and_no_temporary(tmp_path: Path):
    out = tmp_path / "a.txt"
    out.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(InputError, match="disk full"):
        atomic_write(out, broken)
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_missing_directory_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "a.txt", lambda tmp: tmp.write_text("x"))


def test_file_inside_resolves_names_within_the_directory(tmp_path: Path):
    run = tmp_path / "run"
    (run / "figs").mkdir(parents=True)
    (run / "figs" / "a.png").write_bytes(b"png")
    os.symlink(run / "figs" / "a.png", run / "link.png")  # a link that stays inside
    os.symlink(tmp_path, run / "up")  # a directory link that leaves
    assert file_inside(run, "figs/a.png", "figure") == (run / "figs" / "a.png").resolve()
    assert file_inside(run, "figs/../figs/a.png", "figure") == (run / "figs" / "a.png").resolve()
    assert file_inside(run, "link.png", "figure") == (run / "figs" / "a.png").resolve()
    assert file_inside(run, "not/yet.png", "figure") == (run / "not" / "yet.png").resolve()
    refused = {
        "../secret": r"figure '../secret' leads outside .*run$",
        "figs/../../secret": r"leads outside",
        "/etc/passwd": r"figure '/etc/passwd' is an absolute path",
        "up/secret": r"figure 'up/secret' leads outside .*\(a symbolic link to .*secret\)",
        "": r"figure must be a file name relative to .*; got ''",
        "a\0b": r"figure must be a file name",
    }
    for name, message in refused.items():
        with pytest.raises(InputError, match=message):
            file_inside(run, name, "figure")
    with pytest.raises(InputError, match=r"got None"):
        file_inside(run, None, "figure")
