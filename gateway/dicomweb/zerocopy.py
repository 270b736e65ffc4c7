"""Bodies made of stored files, sent with sendfile(2) under gunicorn (zero copy).

A WADO-RS retrieve is mostly file bytes: 63 MB for a 120-slice CT. Read into Python and
handed to gunicorn, every byte is copied twice more (file → bytes object → socket); the
kernel can instead move page-cache pages to the socket itself. gunicorn only does that
for a ``wsgi.file_wrapper`` body of *one* file, so a multipart body goes out like this:

- gunicorn writes the status line and headers (on an empty first chunk) and the closing
  delimiter, and keeps the connection alive as usual;
- in between, while gunicorn iterates the body, each part head goes to the connection
  with ``MSG_MORE`` and its file with ``socket.sendfile``; both are counted into
  gunicorn's response (its access log and Content-Length bookkeeping stay right). A file
  that turns out shorter than announced aborts the response (gunicorn closes the
  connection), so a client never reads a mis-framed body.

Only when it is certainly safe: the WSGI server is gunicorn's own HTTP/1.x response
object (no middleware in between, not HTTP/2, not TLS, sendfile not disabled), the
length is known (no chunked framing), the body has not been touched before the server
asked for it, and the request is a GET. Everywhere else (the Flask test client, another
server, transcoding) the same bytes come from a generator reading 1 MiB chunks.

Every read path checks its stored files (:func:`check_stored`) before the status line: a
missing, unreadable or resized file is a 500 naming the instance, never a 200 with a short
body. A file that goes away after the status line ends the connection without the closing
delimiter (an OSError in the body: gunicorn closes it), so a client sees an error, never a
body that looks complete.
"""
from __future__ import annotations

import errno
import inspect
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flask import Response

from ..archive.protocol import StoredInstance
from .errors import DicomwebError

try:  # the zero-copy path exists only under gunicorn
    from gunicorn.http.wsgi import Response as GunicornResponse
except ImportError:  # pragma: no cover - gunicorn is a dependency of the deployment
    GunicornResponse = None

CHUNK = 1 << 20  # the generator's read size: one read per CT slice
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilePart:
    """``length`` bytes of a stored file from its start (its size at store time)."""

    path: Path
    length: int


Segment = bytes | FilePart


class StoredFileError(DicomwebError):
    """The index knows the instance but its file cannot be sent whole: the archive's fault
    (500), reported before the status line so no client mistakes a short body for data."""

    def __init__(self, sop_uid: str, problem: str) -> None:
        super().__init__(500, f"the stored file of instance {sop_uid} {problem}: the archive "
                              "is inconsistent, nothing was sent", instance=sop_uid)


def file_problem(part: FilePart) -> str | None:
    """Why ``part`` cannot be sent whole, or None. The file is opened, not only stat'ed, so
    one we may not read counts too (~4 us a file: 0.5 ms for a 120-slice series)."""
    try:
        fd = os.open(part.path, os.O_RDONLY)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size != part.length:
        return f"has {info.st_size} bytes, not the {part.length} stored"
    return None


def check_stored(instances: Iterable[StoredInstance]) -> None:
    """Raise :class:`StoredFileError` for the first instance whose file cannot be sent."""
    for inst in instances:
        if inst.remote is not None:  # an object store: its objects precede their rows
            continue
        problem = file_problem(FilePart(inst.path, inst.size))
        if problem is not None:
            log.error("stored file %s of instance %s %s", inst.path, inst.sop_uid, problem)
            raise StoredFileError(inst.sop_uid, problem)


def file_chunks(part: FilePart, chunk: int = CHUNK) -> Iterator[bytes]:
    """Exactly ``part.length`` bytes, or OSError: the framing must hold."""
    left = part.length
    with open(part.path, "rb") as fh:
        while left and (data := fh.read(min(chunk, left))):
            left -= len(data)
            yield data
    if left:
        raise OSError(f"{part.path} ended {left} bytes short of {part.length}")


def chunks(segments: Iterable[Segment]) -> Iterator[bytes]:
    """The body as a plain generator: what every server but gunicorn gets."""
    for segment in segments:
        if isinstance(segment, FilePart):
            yield from file_chunks(segment)
        elif segment:
            yield segment


def length(segments: Iterable[Segment]) -> int:
    return sum(s.length if isinstance(s, FilePart) else len(s) for s in segments)


class FilesResponse(Response):
    """A body of small byte strings and whole stored files, with a Content-Length."""

    def __init__(self, segments: list[Segment], **kw: Any) -> None:
        self.segments = segments
        super().__init__(chunks(segments), direct_passthrough=True, **kw)
        self.headers["Content-Length"] = str(length(segments))

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = gunicorn_response(environ, start_response)
        if target is not None and _untouched(self.response):
            self.response = send_segments(target, self.segments)
        return super().__call__(environ, start_response)


def gunicorn_response(environ: dict, start_response: Callable) -> Any | None:
    """gunicorn's HTTP/1.x response object when it calls us directly, else None."""
    target = getattr(start_response, "__self__", None)
    if GunicornResponse is None or type(target) is not GunicornResponse:
        return None  # another server, a middleware, or gunicorn's HTTP/2 response
    if environ.get("REQUEST_METHOD") != "GET" or \
            environ.get("SERVER_PROTOCOL") not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    sock = getattr(target, "sock", None)
    if type(sock) is not socket.socket or sock is not environ.get("gunicorn.socket"):
        return None  # TLS (ssl.SSLSocket) or something unexpected
    can = getattr(target, "can_sendfile", None)
    return target if callable(can) and can() else None


def _untouched(body: object) -> bool:
    """True unless something (an after_request hook reading the body) started it."""
    return inspect.isgenerator(body) and \
        inspect.getgeneratorstate(body) == inspect.GEN_CREATED


def send_segments(target: Any, segments: list[Segment]) -> Iterator[bytes]:
    """Write the body to gunicorn's socket, counting it into its response; only the
    closing bytes go through gunicorn's own write, which ends the response."""
    if not target.headers_sent:
        yield b""  # gunicorn writes the status line and headers first
    if target.chunked or target.response_length is None:
        raise RuntimeError("gunicorn response not in the state sendfile needs")
    sock = target.sock
    for i, segment in enumerate(segments):
        if isinstance(segment, FilePart):
            target.sent += _sendfile(sock, segment)
        elif i + 1 < len(segments):
            # A part head rides with the file after it: gunicorn's sockets have
            # TCP_NODELAY, and a 90-byte segment of its own per part costs a third of
            # the throughput on loopback (measured: docs/dicomweb.md, Performance).
            sock.sendall(segment, socket.MSG_MORE)
            target.sent += len(segment)
        else:
            yield segment


def _sendfile(sock: socket.socket, part: FilePart) -> int:
    """All of ``part`` or OSError (the response is then cut short and closed)."""
    sent = 0
    if part.length:
        with open(part.path, "rb") as fh:
            sent = _copy(sock, fh, part.length)
    if sent != part.length:
        raise OSError(f"{part.path} ended after {sent} of {part.length} bytes")
    return sent


def _copy(sock: socket.socket, fh: BinaryIO, length: int) -> int:
    """``os.sendfile`` straight on gunicorn's blocking socket: ``socket.sendfile`` costs
    ~7 µs more per call (a selector, a stat), 1 ms per 120-slice series. A socket with a
    timeout (non-blocking underneath) or a file sendfile refuses go the careful way."""
    if sock.gettimeout() is not None:
        return sock.sendfile(fh, 0, length)
    out, src, sent = sock.fileno(), fh.fileno(), 0
    while sent < length:
        try:
            n = os.sendfile(out, src, sent, length - sent)
        except OSError as exc:
            if sent or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            return sock.sendfile(fh, 0, length)
        if n == 0:  # end of file: shorter than the archive says
            break
        sent += n
    return sent
