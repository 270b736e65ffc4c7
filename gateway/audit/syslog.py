"""Audit messages to a syslog collector: RFC 5424 messages, RFC 6587 octet counting over
TCP, RFC 5425 over TLS (the same framing inside TLS 1.2+, server certificate verified).

`SyslogSender.submit` never blocks and never raises: messages wait in a bounded queue for
one background thread that connects, reconnects with backoff and writes. A full queue
drops the new message, counted in `stats` and logged (not on every drop: the first, then
every 1000th); an unreachable collector is logged when the state changes. Messages handed
to a TCP connection that dies silently can be lost: RFC 6587 has no acknowledgement.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..access.tls import client_context

log = logging.getLogger(__name__)

# RFC 5424 6.2.1: facility 10 (security/authorization) x 8 + severity 5 (notice)
PRI = 10 * 8 + 5
APP_NAME = "tcia-gateway"
MSGID = "IHE+RFC-3881"  # what IHE ATNA collectors key audit messages on
BOM = "\ufeff".encode()  # RFC 5424 6.4: a UTF-8 MSG starts with the BOM


def frame(message: bytes, *, hostname: str | None = None, app: str = APP_NAME,
          procid: str | None = None, msgid: str = MSGID,
          when: dt.datetime | None = None) -> bytes:
    """One RFC 5424 message with its RFC 6587 3.4.1 / RFC 5425 4.3 octet count."""
    stamp = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    header = "<{}>1 {} {} {} {} {} -".format(
        PRI, stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        _field(hostname or socket.gethostname(), 255), _field(app, 48),
        _field(procid or str(os.getpid()), 128), _field(msgid, 32))
    body = header.encode("ascii") + b" " + BOM + message
    return str(len(body)).encode("ascii") + b" " + body


def _field(value: str, limit: int) -> str:
    """RFC 5424 6: PRINTUSASCII without spaces, bounded, or NILVALUE."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


@dataclass(frozen=True)
class Collector:
    scheme: str  # "tcp" or "tls"
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Collector:
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
            raise ValueError(f"AUDIT_SYSLOG={url!r}: expected tcp://host:port or tls://host:port")
        return cls(parts.scheme, parts.hostname, parts.port)


@dataclass
class Stats:
    submitted: int = 0
    sent: int = 0
    dropped: int = 0            # the queue was full
    connect_failures: int = 0
    send_failures: int = 0


class SyslogSender:
    def __init__(self, url: str, *, ca_file: str = "", queue_size: int = 10_000,
                 timeout: float = 5.0, hostname: str | None = None,
                 max_backoff: float = 30.0) -> None:
        self.collector = Collector.parse(url)
        self.timeout = timeout
        self.hostname = hostname
        self.max_backoff = max_backoff
        self.stats = Stats()
        self._stats_lock = threading.Lock()
        self._context = client_context(ca_file) if self.collector.scheme == "tls" else None
        self._queue: queue.Queue[bytes | None] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._connected = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- producer side
    def submit(self, message: bytes) -> bool:
        """Queue one message (the A.5 XML); False when it was dropped (queue full)."""
        self._count("submitted")
        if self._closing:
            self._count("dropped")
            log.error("audit syslog: a message submitted after close was dropped")
            return False
        try:
            self._queue.put_nowait(frame(message, hostname=self.hostname))
            return True
        except queue.Full:
            dropped = self._count("dropped")
            if dropped % 1000 == 1:
                log.error("audit syslog queue full (%d): %d messages dropped so far",
                          self._queue.maxsize, dropped)
            return False

    def _count(self, name: str) -> int:
        with self._stats_lock:
            value = getattr(self.stats, name) + 1
            setattr(self.stats, name, value)
            return value

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to `timeout` s), then stop the thread."""
        self._closing = True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(1.0)
        self._disconnect()

    # ---------------------------------------------------------------- sender thread
    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            while not self._stop.is_set():
                if self._send(item):
                    backoff = 0.5
                    break
                self._stop.wait(backoff)  # keep the message; retry after a backoff
                backoff = min(backoff * 2, self.max_backoff)

    def _send(self, data: bytes) -> bool:
        try:
            sock = self._sock or self._connect()
        except OSError as exc:
            self._count("connect_failures")
            self._state(False, f"cannot connect: {exc}")
            return False
        try:
            sock.sendall(data)
        except OSError as exc:
            self._count("send_failures")
            self._disconnect()
            self._state(False, f"send failed: {exc}")
            return False
        self._count("sent")
        return True

    def _connect(self) -> socket.socket:
        c = self.collector
        raw = socket.create_connection((c.host, c.port), timeout=self.timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = (self._context.wrap_socket(raw, server_hostname=c.host)
                    if self._context is not None else raw)
        except (OSError, ssl.SSLError):
            raw.close()
            raise
        self._sock = sock
        self._state(True, "connected")
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _state(self, connected: bool, detail: str) -> None:
        if connected != self._connected or not connected and self.stats.connect_failures == 1:
            c = self.collector
            (log.info if connected else log.error)("audit syslog %s://%s:%d %s", c.scheme,
                                                    c.host, c.port, detail)
        self._connected = connected
