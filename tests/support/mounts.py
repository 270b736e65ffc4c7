"""Real file system faults for the store tests: a small tmpfs (a disk that fills up) and a
read-only bind mount. Both need root (CI runs as root); both are always unmounted."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root (CI runs as root)")


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the duration."""
    _need_root()
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a directory) bound read-only over itself: new opens see a read-only file
    system (EROFS), as after a remount on errors."""
    _need_root()
    _run("mount", "--bind", str(path), str(path))
    try:
        _run("mount", "-o", "remount,bind,ro", str(path))
        yield path
    finally:
        _unmount(path)


def _unmount(path: Path) -> None:
    try:
        _run("umount", str(path))
    except subprocess.CalledProcessError:
        _run("umount", "-l", str(path))  # something still holds it open: detach now


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """Write a filler file so that only ``leave`` bytes stay free on ``path``'s file system."""
    filler = path / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free_bytes(path) - leave))
    return filler
