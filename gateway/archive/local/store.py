"""The embedded archive's file store: one file per SOP instance, byte-for-byte as received.

It implements :class:`gateway.archive.files.FileStore` on a directory. Files are written to a temporary name in ``tmp/``, fsync'ed, then renamed into
``files/<study>/<series>/<sop>_<digest>.dcm``; a crash leaves at worst an orphan temp
file (swept at start-up once older than TEMP_MAX_AGE) or a complete file the index does
not know yet (``tcia-gateway check --repair`` indexes it), never a half file that the
index points to. Placing and indexing happen under one lock shared by every process on
this data dir (:meth:`FileStore.exclusive`), so two writers never decide against an
index the other is about to change.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO, BinaryIO, Iterator

from ..files import Received, out_of_space

__all__ = ["FileStore", "TempWriter", "out_of_space", "safe_component", "seal"]

CHUNK = 1 << 20
LOCK_NAME = ".store.lock"  # in DATA_DIR: held while placing and indexing
_UNSAFE = re.compile(r"[^0-9A-Za-z.\-]")


def safe_component(uid: str) -> str:
    """A UID as a path component: nothing but digits, letters, dots and dashes."""
    cleaned = _UNSAFE.sub("_", uid.strip())[:64]
    return cleaned if cleaned.strip(".") else "_"


PART = ".part"


class TempWriter:
    """Streams bytes into a temp file under the store, hashing as it goes (a ``Spool``). The file is
    flock'ed while open, so a sweep of leftovers never takes a part still being written."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, suffix=PART)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fh = os.fdopen(fd, "wb")
        self.path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> Received:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return Received(self.path, self._hash.hexdigest(), self.size)

    def discard(self) -> None:
        """Remove the temp file, even when closing fails (a full disk fails the flush)."""
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:
                pass
        self.path.unlink(missing_ok=True)


def seal(path: Path) -> Received:
    """Hash and fsync a file of :meth:`FileStore.spool_bytes`: only then may it be put."""
    return _digest(path, sync=True)


def _digest(path: Path, *, sync: bool) -> Received:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(fh.fileno())
    return Received(path, h.hexdigest(), size)


class FileStore:
    """Files under ``root/files``, keyed by their path below it; temp files in ``root/tmp``."""

    def __init__(self, root: Path, files: Path | None = None) -> None:
        self.root = root
        self.files = files or root / "files"  # STORE_URL=file://PATH names another place
        self.tmp = root / "tmp"
        self.files.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def stale_parts(self, older_than: float) -> list[Path]:
        """Temp files last written more than ``older_than`` seconds ago and not being written
        now (a :class:`TempWriter` holds its file's lock): leftovers of a crash."""
        limit = time.time() - older_than
        stale = []
        for p in sorted(self.tmp.glob("*" + PART)):
            try:
                if p.stat().st_mtime <= limit and not _locked(p):
                    stale.append(p)
            except FileNotFoundError:
                pass
        return stale

    def sweep(self, older_than: float) -> int:
        """Remove leftovers of interrupted writes (see :meth:`stale_parts`); how many."""
        count = 0
        for p in self.stale_parts(older_than):
            try:
                p.unlink()
                count += 1
            except FileNotFoundError:
                pass
        return count

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's write lock (every process on this data dir, and every thread:
        each call opens its own file description). The kernel drops it if we die."""
        fd = os.open(self.root / LOCK_NAME, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def write_refusal(self) -> str:
        """Why new files could not be written here ('' if they can); access(2) also sees a
        read-only mount. A full disk is not a refusal: reads go on, STOW says 0xA700."""
        for d in (self.tmp, self.files):
            if not os.access(d, os.W_OK | os.X_OK):
                return f"{d} is read-only"
        return ""

    def spool(self) -> TempWriter:
        return TempWriter(self.tmp)

    def receive(self, source: Path | IO[bytes]) -> Received:
        """Copy ``source`` into a temp file (hashing while copying)."""
        w = self.spool()
        try:
            fh = open(source, "rb") if isinstance(source, (str, Path)) else source
            try:
                while chunk := fh.read(CHUNK):
                    w.write(chunk)
            finally:
                if fh is not source:
                    fh.close()
            return w.finish()
        except BaseException:
            w.discard()
            raise

    def spool_bytes(self, data: bytes) -> Path:
        """Write ``data`` to a temp file, neither hashed nor synced yet: a copy into the page
        cache, so the caller can hand the expensive part (:func:`seal`) to a helper process."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=PART)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    @staticmethod
    def hash_file(path: Path) -> Received:
        """Digest and size of a file that is already durable (one being imported in place)."""
        return _digest(path, sync=False)

    def key(self, study: str, series: str, sop: str, sha256: str) -> str:
        """``<study>/<series>/<sop>_<digest>.dcm``: the digest keeps a replacement from ever
        overwriting the file the index points to (the index switches, then the old one goes)."""
        return "/".join((safe_component(study), safe_component(series),
                         f"{safe_component(sop)}_{sha256[:12]}.dcm"))

    def local_path(self, key: str) -> Path:
        """The file of ``key`` (the read paths send it with sendfile and parse it in place)."""
        return self.files / key

    def put(self, received: Received, key: str) -> None:
        """Atomically move a received temp file to its final name."""
        target = self.files / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received.path, target)

    def exists(self, key: str) -> bool:
        return (self.files / key).exists()

    def open(self, key: str) -> BinaryIO:
        return open(self.files / key, "rb")

    def read(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self.files / key, os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        (self.files / key).unlink(missing_ok=True)

    def flush(self) -> None:
        """Puts here are done when :meth:`put` returns (an object store's are not)."""


def _locked(path: Path) -> bool:
    """Another open file description holds a lock on ``path`` (a live writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
