"""multipart/related (RFC 2387, PS3.18 8.6.1.2): a streaming writer and reader. Pure.

Writer, as Cornerstone's parser needs it (docs/dicomweb.md): no preamble before the first
``--boundary``, part headers spelled ``Content-Type:``, a CRLF before every delimiter
including the closing one. The reader accepts what real clients send: quoted or bare
boundaries, a preamble (dicomweb-client starts with CRLF), header names in any case,
and bodies of any size, which it hands out in chunks so no part is ever held whole.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

SMALL = 64 * 1024          # below this a part head is glued to its first chunk (one write)
MAX_HEADER_BYTES = 16 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024
MAX_PADDING_BYTES = 1024   # transport padding after a boundary (RFC 2046 5.1.1)
CRLF = b"\r\n"
T = TypeVar("T")


class MultipartError(ValueError):
    """The body is not the multipart message its Content-Type announced (400)."""


def new_boundary() -> str:
    """A boundary that cannot occur in DICOM payloads by accident (RFC 2046 5.1.1)."""
    return uuid.uuid4().hex


def content_type(part_type: str, boundary: str) -> str:
    """The response Content-Type: ``type`` quoted, as the standard's examples write it."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def part_head(boundary: str, part_content_type: str, *, first: bool) -> bytes:
    """Delimiter line and headers of one part; the first part has no leading CRLF."""
    lead = b"" if first else CRLF
    return (lead + b"--" + boundary.encode("ascii") + CRLF + b"Content-Type: "
            + part_content_type.encode("ascii") + CRLF + CRLF)


def closing(boundary: str) -> bytes:
    """CRLF, the close delimiter, CRLF."""
    return CRLF + b"--" + boundary.encode("ascii") + b"--" + CRLF


def stream(parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    """Yield the message lazily: one part's body at a time, in the chunks it comes in."""
    first = True
    for ctype, body in parts:
        head = part_head(boundary, ctype, first=first)
        first = False
        for chunk in body:
            if head and len(chunk) < SMALL:
                chunk, head = head + chunk, b""
            elif head:
                yield head
                head = b""
            if chunk:
                yield chunk
        if head:
            yield head
    if first:  # no parts at all: still a well-formed message
        yield b"--" + boundary.encode("ascii") + b"--" + CRLF
    else:
        yield closing(boundary)


def segments(parts: Iterable[tuple[str, T]], boundary: str) -> list[bytes | T]:
    """The message as delimiters and part headers around opaque bodies (files sent by
    the caller): the same framing as :func:`stream`, for a body it does not read."""
    out: list[bytes | T] = []
    for ctype, body in parts:
        out += [part_head(boundary, ctype, first=not out), body]
    out.append(closing(boundary) if out else b"--" + boundary.encode("ascii") + b"--" + CRLF)
    return out


def stream_length(part_types_and_sizes: Iterable[tuple[str, int]], boundary: str) -> int:
    """Exact length of :func:`stream` output, for a Content-Length header."""
    total, first = 0, True
    for ctype, size in part_types_and_sizes:
        total += len(part_head(boundary, ctype, first=first)) + size
        first = False
    return total + (len(boundary) + 6 if first else len(closing(boundary)))


def encode(parts: Iterable[tuple[str, bytes]], boundary: str) -> bytes:
    """The whole message at once (small bodies: tests, STOW clients)."""
    return b"".join(stream(((t, [b]) for t, b in parts), boundary))


# ------------------------------------------------------------------------ reader
@dataclass
class Part:
    """One body part; read :meth:`chunks` before asking the reader for the next part."""

    headers: dict[str, str]
    _reader: MultipartReader

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def chunks(self) -> Iterator[bytes]:
        return self._reader._body()


class MultipartReader:
    """Parse a multipart body from ``read(n)`` (a WSGI input stream), chunk by chunk."""

    def __init__(self, read: Callable[[int], bytes], boundary: str, chunk: int = 1 << 20,
                 max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("missing or invalid multipart boundary")
        self._read = read
        self._chunk = chunk
        self._max_header = max_header_bytes
        self._dash = b"--" + boundary.encode("latin-1")
        self._delim = CRLF + self._dash
        self._buf = bytearray()
        self._eof = False
        self._done = False
        self._in_body = False

    def _fill(self) -> bool:
        """Read more input; False at end of input."""
        if self._eof:
            return False
        data = self._read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def parts(self) -> Iterator[Part]:
        self._skip_preamble()
        while not self._done:
            if self._after_delimiter():
                return
            headers = self._headers()
            self._in_body = True
            yield Part(headers, self)
            for _ in self._body():  # drain whatever the consumer left unread
                pass

    # Each limit below is on the bytes of the thing itself, so it holds however the body
    # arrives: checked when the thing is found, and while it is still incomplete.
    def _skip_preamble(self) -> None:
        """Find the first delimiter: at the very start or after a CRLF (RFC 2046 5.1.1)."""
        start = 0
        while True:
            if self._buf.startswith(self._dash):
                del self._buf[:len(self._dash)]
                return
            idx = self._buf.find(self._delim, start)
            if 0 <= idx <= MAX_PREAMBLE_BYTES:
                del self._buf[:idx + len(self._delim)]
                return
            start = max(0, len(self._buf) - len(self._delim))
            if idx > MAX_PREAMBLE_BYTES or start >= MAX_PREAMBLE_BYTES:
                raise MultipartError("no multipart boundary found at the start of the body")
            if not self._fill():
                raise MultipartError("empty or truncated multipart body (no boundary found)")

    def _need(self, n: int) -> None:
        while len(self._buf) < n:
            if not self._fill():
                raise MultipartError("multipart body ends inside a delimiter")

    def _after_delimiter(self) -> bool:
        """Consume what follows a delimiter; True if it was the closing one."""
        self._need(2)
        if self._buf[:2] == b"--":
            self._done = True
            return True
        while True:  # transport padding (RFC 2046 5.1.1), then CRLF
            idx = self._buf.find(CRLF)
            if 0 <= idx <= MAX_PADDING_BYTES:
                if self._buf[:idx].strip(b" \t"):
                    raise MultipartError("garbage after a multipart boundary")
                del self._buf[:idx + 2]
                return False
            if idx > MAX_PADDING_BYTES or len(self._buf) - 1 > MAX_PADDING_BYTES \
                    or not self._fill():
                raise MultipartError("multipart boundary line is not terminated by CRLF")

    def _headers(self) -> dict[str, str]:
        """The header block up to its blank line, at most ``max_header_bytes`` long however
        the bytes arrive (one at a time, or one read holding headers and body)."""
        while len(self._buf) < 2:
            if not self._fill():
                raise MultipartError("multipart body ends inside part headers")
        if self._buf.startswith(CRLF):  # a part without headers
            del self._buf[:2]
            return {}
        start = 0
        while True:
            idx = self._buf.find(CRLF + CRLF, start)
            if idx > self._max_header or (idx < 0 and len(self._buf) > self._max_header + 3):
                raise MultipartError(f"multipart part headers longer than {self._max_header} "
                                     "bytes")
            if idx >= 0:
                raw = bytes(self._buf[:idx]).decode("latin-1")
                del self._buf[:idx + 4]
                return _parse_headers(raw)
            start = max(0, len(self._buf) - 3)
            if not self._fill():
                raise MultipartError("multipart body ends inside part headers")

    def _body(self) -> Iterator[bytes]:
        """The current part's bytes up to the next delimiter, in chunks."""
        if not self._in_body:
            return
        keep = len(self._delim) - 1
        start = 0
        while True:
            idx = self._buf.find(self._delim, start)
            if idx >= 0:
                data = bytes(self._buf[:idx])
                del self._buf[:idx + len(self._delim)]
                self._in_body = False
                if data:
                    yield data
                return
            if len(self._buf) > keep:
                data = bytes(self._buf[:len(self._buf) - keep])
                del self._buf[:len(data)]
                yield data
            start = 0
            if not self._fill():
                self._in_body = False
                raise MultipartError("multipart body ends before the closing boundary")


def _parse_headers(raw: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.split("\r\n"):
        if not line.strip():
            continue
        if line[0] in " \t" and headers:  # obs-fold: one SP (RFC 9112 5.2), no OWS around
            last = next(reversed(headers))
            headers[last] = f"{headers[last]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers
