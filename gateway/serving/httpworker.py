"""The gunicorn worker: gthread, changed where it would hang or answer out of form.

- Request lines up to ``REQUEST_LINE_BYTES``: gunicorn clamps ``limit_request_line`` to
  8190 bytes, too short for the UID lists OHIF and dicomweb-client put in QIDO URLs.
- Errors gunicorn answers itself, before the application sees the request (request
  line or headers too long or malformed, bad chunked framing), get the face's own form:
  DICOMweb JSON under /dicomweb and /wado, a FHIR OperationOutcome under /fhir, JSON
  elsewhere, instead of gunicorn's HTML page. Which face is read from the first bytes
  of the request, peeked before gunicorn parses it.
- A connection that closes lingers (RFC 9112 9.6: half-close, read what the client still
  sends, so an answer sent before the whole request arrived is not lost to a reset) in
  one thread of its own that watches all such sockets. gunicorn lingers in its event
  loop, up to 2 s per client that does not close: 8 HTTP/1.0 requests from clients that
  kept their sockets open delayed ``/healthz`` on that worker by 9.7 s. In a request
  thread it would cost a thread per refused slow client instead.
"""
from __future__ import annotations

import functools
import queue
import selectors
import socket
import threading
import time
from typing import Any

import orjson
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import ThreadWorker

HEAD = 256            # bytes peeked: method and the start of the target
FIRST_BYTES = 0.05    # seconds to wait for a new connection's first bytes before peeking
LINGER = 2.0          # at most this long reading what a closing client still sends
LINGER_QUIET = 0.2    # ... and stop once it sends nothing for this long
LINGER_BYTES = 64 << 20
LINGER_SOCKETS = 1000  # more lingering at once are closed at once

BAD_REQUEST = (http_errors.InvalidRequestLine, http_errors.InvalidRequestMethod,
               http_errors.InvalidHTTPVersion, http_errors.InvalidHeader,
               http_errors.InvalidHeaderName, http_errors.ObsoleteFolding,
               http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator,
               http_errors.InvalidChunkExtension, http_errors.InvalidSchemeHeaders)
REASONS = {400: "Bad Request", 414: "URI Too Long", 417: "Expectation Failed",
           431: "Request Header Fields Too Large", 501: "Not Implemented"}


class LongLineRequest(Request):
    """gunicorn's Request, with ``limit_request_line`` as configured: Request clamps it to
    its module's MAX_REQUEST_LINE (8190) and this worker must not change that global."""

    def parse(self, unreader: Any) -> Any:
        if self.cfg.limit_request_line > 0:  # RFC 9112 3: the server chooses the limit
            self.limit_request_line = self.cfg.limit_request_line
            self._fast_limit_request_line = self.cfg.limit_request_line
        return super().parse(unreader)


class LongLineParser(RequestParser):
    mesg_class = LongLineRequest


class Worker(ThreadWorker):
    """``worker_class = "gateway.serving.httpworker.Worker"`` (gateway/serving/gunicorn_conf.py)."""

    def init_process(self) -> None:
        self._heads = threading.local()
        self._lingerer = Lingerer()
        from ..config import Settings
        from ..cors import allowed_origin, parse_origins
        self._cors = allowed_origin(None, parse_origins(Settings.load().cors_origins))
        super().init_process()

    def handle(self, conn: Any) -> Any:
        self._heads.value = _peek(conn)
        if conn.parser is None and not self.cfg.is_ssl:  # TConn.init keeps a parser it has
            conn.parser = LongLineParser(self.cfg, conn.sock, conn.client)
        conn.close = functools.partial(self._close, conn)  # called from the event loop
        return super().handle(conn)

    def _close(self, conn: Any, graceful: bool = False) -> None:
        """gthread's TConn.close, with the graceful close handed to the lingerer."""
        if graceful:
            self._lingerer.add(conn.sock)
        else:
            util.close(conn.sock)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer = client_error(exc, self.cfg)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        status, text = answer
        path = getattr(req, "path", None) or target_of(getattr(self._heads, "value", b""))
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, error_bytes(path, status, text, self._cors))
        except OSError:
            self.log.debug("Failed to send error message.")


def client_error(exc: BaseException, cfg: Any) -> tuple[int, str] | None:
    """(status, reason text) for the request errors gunicorn finds itself."""
    if isinstance(exc, (http_errors.InvalidResponseHeader,
                        http_errors.InvalidResponseHeaderName)):
        return None  # the application's fault: gunicorn's 500
    if isinstance(exc, http_errors.LimitRequestLine):
        return 414, (f"request line longer than {cfg.limit_request_line} bytes "
                     "(REQUEST_LINE_BYTES); send long searches as POST")
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return 431, (f"request header fields too large (at most {cfg.limit_request_fields} "
                     f"fields of {cfg.limit_request_field_size} bytes): {exc}")
    if isinstance(exc, http_errors.ExpectationFailed):
        return 417, f"unsupported expectation: {exc}"
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return 501, str(exc)
    if isinstance(exc, BAD_REQUEST):
        return 400, f"malformed HTTP request: {exc}"
    return None


def error_bytes(path: str, status: int, text: str, cors: str | None) -> bytes:
    """A whole HTTP/1.1 response in the form of the face ``path`` belongs to."""
    reason = REASONS.get(status, "Error")
    headers = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
    if path.startswith("/fhir"):
        from ..fhir.outcome import FhirError, error_body
        code = "too-long" if status in (414, 431) else "invalid"
        body = error_body(FhirError(status, code, text))
        headers.append("Content-Type: application/fhir+json; charset=utf-8")
    else:  # DICOMweb (PS3.18 8.6.3) and everything else: status, error, message
        body = orjson.dumps({"status": status, "error": reason, "message": text})
        headers.append("Content-Type: application/json")
        if path.startswith(("/dicomweb", "/wado", "/collections/")):
            from ..dicomweb.errors import header_safe
            headers.append(f'Warning: 299 tcia-gateway "{header_safe(text)}"')
    if cors:
        headers.append(f"Access-Control-Allow-Origin: {cors}")
    headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body


def target_of(head: bytes) -> str:
    """The path of a request line's target (origin or absolute form), or ''."""
    parts = head.split(b" ", 2)
    if len(parts) < 2:
        return ""
    target = parts[1].decode("latin-1")
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return target


def _peek(conn: Any) -> bytes:
    """The first bytes of the next request without consuming them."""
    unreader = getattr(getattr(conn, "parser", None), "unreader", None)
    buffered = unreader.buf.getvalue() if unreader is not None else b""
    if buffered:  # pipelined behind the previous request
        return buffered[:HEAD]
    if not conn.initialized:
        conn.wait_for_data(FIRST_BYTES)  # gunicorn then waits no more when it came
    try:
        return conn.sock.recv(HEAD, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (OSError, ValueError):  # nothing yet, closed, or TLS (no flags allowed)
        return b""


class Lingerer:
    """Lingering closes of one worker process, in one daemon thread: each socket is
    half-closed, read and dropped until the client closes, sends nothing for
    LINGER_QUIET, or LINGER / LINGER_BYTES are reached, then closed."""

    def __init__(self) -> None:
        self._new: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lingerer")
        self._thread.start()

    def add(self, sock: socket.socket) -> None:
        self._new.put(sock)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        socks: dict[socket.socket, list[float]] = {}  # sock -> [deadline, quiet until, bytes]
        while True:
            try:
                while True:
                    self._admit(self._new.get(block=not socks), socks, selector)
            except queue.Empty:
                pass
            now = time.monotonic()
            wake = min(min(d, q) for d, q, _ in socks.values()) - now if socks else 0
            for key, _ in selector.select(max(0.0, min(wake, LINGER_QUIET))):
                self._drain(key.fileobj, socks)  # type: ignore[arg-type]
            now = time.monotonic()
            for sock, (deadline, quiet, drained) in list(socks.items()):
                if now >= deadline or now >= quiet or drained >= LINGER_BYTES:
                    self._drop(sock, socks, selector)

    @staticmethod
    def _admit(sock: socket.socket, socks: dict, selector: selectors.BaseSelector) -> None:
        if len(socks) >= LINGER_SOCKETS:
            util.close(sock)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        now = time.monotonic()
        socks[sock] = [now + LINGER, now + LINGER_QUIET, 0]

    def _drain(self, sock: socket.socket, socks: dict) -> None:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        state = socks[sock]
        if not data:
            state[0] = 0.0  # the client closed (or reset): done
            return
        state[1] = time.monotonic() + LINGER_QUIET
        state[2] += len(data)

    @staticmethod
    def _drop(sock: socket.socket, socks: dict, selector: selectors.BaseSelector) -> None:
        del socks[sock]
        try:
            selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        util.close(sock)
