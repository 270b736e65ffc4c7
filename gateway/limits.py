"""Bounds on request bodies, enforced below Flask (WSGI middleware) for every route.

Under gunicorn's gthread worker a request holds one of a worker's few threads while its
body is read, so a client that sends its body slowly, or stops, would hold that thread
for as long as it likes (40 such clients took all 16 threads of a 4 x 4 gateway, and
``/healthz`` stopped answering). Here, while a body is read:

- each socket read waits at most ``BODY_IDLE_TIMEOUT`` (a socket timeout);
- the time spent waiting for the client may be at most ``BODY_IDLE_TIMEOUT +
  bytes / BODY_MIN_RATE``: a watchdog thread per process shuts the reading side of a
  socket that falls behind, which ends the blocked read at once. The read in progress
  counts as arrived (it cannot be seen into), so reads start at 64 KiB and grow to
  1 MiB only while they fill: a body trickling from the start is cut after about
  ``BODY_IDLE_TIMEOUT + 64 KiB / BODY_MIN_RATE`` (46 s by default);
- at most ``UPLOAD_SLOTS`` bodies per process are read at once, so a worker keeps a
  thread for requests without a body (reads, health checks).

Failures are raised as werkzeug HTTP errors (408 slow, 400 truncated or malformed
chunked framing, 503 no slot), which each face's error handler answers in its own form;
STOW removes what it spooled. A body that was not read to its end (refused, cut, timed
out) leaves the next request's start on the connection unknown, so the connection is
closed after the answer (RFC 9112 9.6, 9.3).
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    RequestTimeout,
    ServiceUnavailable,
)

from .config import Settings

MIN_STEP = 64 * 1024   # first socket read of a body; doubled after each full read
MAX_STEP = 1 << 20
TICK = 0.25            # how often the watchdog looks, and a slot waiter (seconds)
RETRY_AFTER = "1"      # seconds, on 503 for want of an upload slot


@dataclass(frozen=True)
class BodyPolicy:
    idle: float
    min_rate: float
    slots: int
    wait: float

    @classmethod
    def of(cls, settings: Settings) -> BodyPolicy:
        return cls(settings.body_idle_timeout, float(settings.body_min_rate),
                   settings.upload_slots, settings.upload_wait)

    def allowed_wait(self, received: int) -> float:
        """Seconds of waiting a body of ``received`` bytes may have taken so far."""
        if not self.min_rate:
            return float("inf")
        return self.idle + received / self.min_rate


class Uploads:
    """Per process: the upload slots, and the watchdog that cuts bodies arriving slower
    than the minimum rate (its thread runs only while bodies are being read).

    A body finding every slot taken waits for one only while some holder is young (began
    less than UPLOAD_WAIT ago, so likely a fast upload about to finish): when the slots
    are held by slow bodies, waiting would only hold the worker's free thread, so the
    answer is an immediate 503."""

    def __init__(self, policy: BodyPolicy) -> None:
        self.policy = policy
        self._cond = threading.Condition()
        self._holders: dict[GuardedBody, float] = {}  # body -> when it took its slot
        self._thread: threading.Thread | None = None

    def enter(self, body: GuardedBody) -> bool:
        deadline = time.monotonic() + self.policy.wait
        with self._cond:
            while len(self._holders) >= self.policy.slots:
                now = time.monotonic()
                young = any(now - t < self.policy.wait for t in self._holders.values())
                if now >= deadline or not young:
                    return False
                self._cond.wait(min(TICK, deadline - now))
            self._holders[body] = time.monotonic()
            if self._thread is None and body.sock is not None and self.policy.min_rate:
                self._thread = threading.Thread(target=self._watch, daemon=True,
                                                name="body-watchdog")
                self._thread.start()
        return True

    def leave(self, body: GuardedBody) -> None:
        with self._cond:  # after this the watchdog never touches the body's socket
            self._holders.pop(body, None)
            self._cond.notify()

    def _watch(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._cond:
                if not self._holders:
                    self._thread = None
                    return
                for body in self._holders:
                    if body.waited(now) > self.policy.allowed_wait(body.credit()):
                        body.cut()


class GuardedBody:
    """``wsgi.input`` as the application reads it: bounded in time, checked against its
    Content-Length, every failure an HTTP error."""

    def __init__(self, raw: Any, length: int | None, sock: socket.socket | None,
                 uploads: Uploads) -> None:
        self.raw, self.length, self.sock, self.uploads = raw, length, sock, uploads
        self.received = 0
        self.refused = False        # no upload slot: the answer gets Retry-After
        self._state = "new"         # new, reading, done (read to its end), failed
        self._step = MIN_STEP
        self._waited = 0.0          # seconds spent in finished socket reads
        self._since: float | None = None  # start of the read in progress
        self._in_flight = 0
        self._cut = False
        self._timeout: float | None = None

    # --------------------------------------------------------------- reading
    def read(self, size: int | None = -1) -> bytes:
        want = sys.maxsize if size is None or size < 0 else size
        out: list[bytes] = []
        got = 0
        while got < want and self._state in ("new", "reading"):
            step = self._step if self.length is None else min(self._step,
                                                             self.length - self.received)
            data = self._read_step(min(want - got, step))
            if not data:
                break
            out.append(data)
            got += len(data)
        return b"".join(out)

    def readline(self, size: int | None = -1) -> bytes:
        """Rarely used on bodies (WSGI asks for it): a byte at a time, as files allow."""
        line = bytearray()
        while (size is None or size < 0 or len(line) < size) and not line.endswith(b"\n"):
            data = self.read(1)
            if not data:
                break
            line += data
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _read_step(self, n: int) -> bytes:
        if self._state == "new":
            self._start()
        self._in_flight, self._since = n, time.monotonic()
        try:
            data = self.raw.read(n)
        except Exception as exc:  # gunicorn's body raises socket and framing errors
            raise self._fail(self._error_for(exc)) from None
        finally:
            self._waited += time.monotonic() - self._since
            self._since, self._in_flight = None, 0
        if self._cut:
            raise self._fail(self._too_slow())
        self.received += len(data)
        if not data or (self.length is not None and self.received >= self.length):
            if self.length is not None and self.received < self.length:
                raise self._fail(ClientDisconnected(
                    f"the request body ended after {self.received} of its {self.length} bytes "
                    "(Content-Length): the client went away; nothing was stored"))
            self._end("done")
        elif len(data) == n:
            self._step = min(2 * self._step, MAX_STEP)
        return data

    def _start(self) -> None:
        if not self.uploads.enter(self):
            self.refused = True
            self._state = "failed"
            raise ServiceUnavailable(f"all {self.uploads.policy.slots} upload slots of this "
                                     "worker are busy (UPLOAD_SLOTS); retry shortly")
        self._state = "reading"
        if self.sock is not None:
            self._timeout = self.sock.gettimeout()
            self.sock.settimeout(self.uploads.policy.idle)

    def _error_for(self, exc: Exception) -> Exception:
        if self._cut:
            return self._too_slow()
        if isinstance(exc, TimeoutError):
            return RequestTimeout(f"no byte of the request body arrived for "
                                  f"{self.uploads.policy.idle:g} s (BODY_IDLE_TIMEOUT); "
                                  "nothing was stored")
        if isinstance(exc, OSError):  # includes gunicorn's NoMoreData: a cut chunked body
            return ClientDisconnected("the connection ended while the request body was read: "
                                      "the client went away; nothing was stored")
        return BadRequest(f"malformed request body framing: {exc}; nothing was stored")

    def _too_slow(self) -> RequestTimeout:
        return RequestTimeout(f"the request body arrived slower than "
                              f"{self.uploads.policy.min_rate:g} bytes/s (BODY_MIN_RATE); "
                              "nothing was stored")

    def _fail(self, error: Exception) -> Exception:
        self._end("failed")
        return error

    def _end(self, state: str) -> None:
        if self._state == "reading":
            self.uploads.leave(self)
            if self.sock is not None:
                try:
                    self.sock.settimeout(self._timeout)
                except OSError:
                    pass
        self._state = state

    # ------------------------------------------------------- watchdog side
    def waited(self, now: float) -> float:
        since = self._since
        return self._waited + (now - since if since is not None else 0.0)

    def credit(self) -> int:
        """Bytes counted for the rate: received, and the read in progress as if done."""
        return self.received + self._in_flight

    def cut(self) -> None:
        """End the blocked read now (it returns short); the reader then answers 408."""
        if not self._cut and self.sock is not None:
            self._cut = True
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    # --------------------------------------------------------- request end
    @property
    def complete(self) -> bool:
        return self._state == "done"

    def close_request(self) -> bool:
        """Release what the body holds; True if it was read to its end."""
        complete = self._state == "done"
        if self._state != "done":
            self._end("failed")
            if hasattr(self.raw, "failed"):
                # gunicorn's Body: the next request's start is unknown, close (RFC 9112 9.3)
                self.raw.failed = True
        return complete


class BodyLimits:
    """The middleware: requests with a body read it through a :class:`GuardedBody`."""

    def __init__(self, app: Callable, settings: Settings) -> None:
        self.app = app
        self.uploads = Uploads(BodyPolicy.of(settings))

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        coding = environ.get("HTTP_TRANSFER_ENCODING")
        if not coding and not environ.get("CONTENT_LENGTH"):
            return self.app(environ, start_response)  # no body: the common GET, at once
        chunked = coding is not None and "chunked" in coding.lower()
        length = _content_length(environ)
        if not chunked and not length:
            return self.app(environ, start_response)
        sock = environ.get("gunicorn.socket")
        body = GuardedBody(environ["wsgi.input"], None if chunked else length,
                           sock if isinstance(sock, socket.socket) else None, self.uploads)
        environ["wsgi.input"] = body
        environ["wsgi.input_terminated"] = True  # we end it at Content-Length

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            if body.refused:
                headers = [*headers, ("Retry-After", RETRY_AFTER)]
            if not body.complete:  # answered before the body's end: say the connection closes
                force_close = getattr(getattr(start_response, "__self__", None),
                                      "force_close", None)
                if callable(force_close):  # gunicorn's Response
                    force_close()
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            body.close_request()


def _content_length(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def install(app: Any, settings: Settings) -> None:
    """Put the body limits under a Flask app (``app.wsgi_app``)."""
    app.wsgi_app = BodyLimits(app.wsgi_app, settings)
