"""The file store: one file per SOP instance, byte-for-byte as received.

Files are written to a temporary name in ``tmp/``, fsync'ed, then renamed into
``files/<study>/<series>/<sop>.dcm``; a crash leaves at worst an orphan temp file
(removed at start-up) or a complete file the index does not know yet (a
re-import indexes it), never a half file that the index points to.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..protocol import Fragment, StoredInstance

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^0-9A-Za-z.\-]")


@dataclass(frozen=True)
class Received:
    """A complete temporary file with its digest, ready to be placed."""

    path: Path
    sha256: str
    size: int


def safe_component(uid: str) -> str:
    """A UID as a path component: nothing but digits, letters, dots and dashes."""
    cleaned = _UNSAFE.sub("_", uid.strip())[:64]
    return cleaned if cleaned.strip(".") else "_"


class TempWriter:
    """Streams bytes into a temp file under the store, hashing as it goes."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
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
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)


def seal(path: Path) -> Received:
    """Hash and fsync a spooled file (see :meth:`FileStore.spool`): only then may it be placed."""
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
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.tmp = root / "tmp"
        self.files.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def clean_temp(self, older_than: float = 0.0) -> int:
        """Remove leftovers of interrupted writes; returns how many."""
        import time
        count = 0
        limit = time.time() - older_than
        for p in self.tmp.glob("*.part"):
            try:
                if p.stat().st_mtime <= limit:
                    p.unlink()
                    count += 1
            except FileNotFoundError:
                pass
        return count

    def writer(self) -> TempWriter:
        return TempWriter(self.tmp)

    def receive(self, source: Path | BinaryIO) -> Received:
        """Copy ``source`` into a temp file (hashing while copying)."""
        w = self.writer()
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

    def spool(self, data: bytes) -> Path:
        """Write ``data`` to a temp file, neither hashed nor synced yet: a copy into the page
        cache, so the caller can hand the expensive part (:func:`seal`) to a helper process."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
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

    def relpath(self, study: str, series: str, sop: str, sha256: str) -> str:
        """``<study>/<series>/<sop>_<digest>.dcm``: the digest keeps a replacement from ever
        overwriting the file the index points to (the index switches, then the old one goes)."""
        return "/".join((safe_component(study), safe_component(series),
                         f"{safe_component(sop)}_{sha256[:12]}.dcm"))

    def abspath(self, rel: str) -> Path:
        return self.files / rel

    def place(self, received: Received, rel: str) -> Path:
        """Atomically move a received temp file to its final name."""
        target = self.files / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received.path, target)
        return target

    def remove(self, rel: str) -> None:
        (self.files / rel).unlink(missing_ok=True)


def read_frame(inst: StoredInstance, number: int) -> bytes:
    """One frame's bytes with one positioned read per fragment (numbered from 1)."""
    assert inst.frames is not None
    fragments = inst.frames[number - 1]
    with open(inst.path, "rb") as fh:
        return b"".join(_pread(fh, f) for f in fragments)


def _pread(fh: BinaryIO, frag: Fragment) -> bytes:
    return os.pread(fh.fileno(), frag.length, frag.offset)


def iter_file(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            yield data

