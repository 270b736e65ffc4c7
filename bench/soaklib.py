"""The soak's machinery: keep-alive clients that record every answer, a gate that pauses
them for quiet samples, and a sampler of the gunicorn processes (RSS, open descriptors)
read from /proc."""
from __future__ import annotations

import gzip
import http.client
import os
import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.benchlib import children, percentile, rss_mb
from bench.soaktraffic import Request, Traffic

FIRST_ERRORS = 8  # printed in full (status and body)
BODY_SHOWN = 400
IDLE_REOPEN = 20.0  # seconds; gunicorn closes idle keep-alive connections after 30 (keepalive)


@dataclass
class Recorder:
    """Every answer, by kind: latency, errors, and the first errors in detail."""

    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    first_errors: list[dict] = field(default_factory=list)
    new_sops: set[str] = field(default_factory=set)  # acknowledged new instances
    reconnects: int = 0  # the server said Connection: close (not an error)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, req: Request, ms: float, status: int | None, why: str | None,
               body: bytes = b"") -> None:
        with self._lock:
            self.ms[req.kind].append(ms)
            if why is None:
                self.new_sops.update(req.new_sops)
                return
            self.errors[req.kind] += 1
            if len(self.first_errors) < FIRST_ERRORS:
                self.first_errors.append({
                    "kind": req.kind, "request": f"{req.method} {req.path}", "status": status,
                    "why": why, "ms": round(ms, 1), "at": time.strftime("%H:%M:%S"),
                    "body": body[:BODY_SHOWN].decode("utf-8", "replace")})

    def closed(self, closing: bool) -> None:
        with self._lock:
            self.reconnects += closing

    def table(self) -> dict[str, dict]:
        return {kind: {"n": len(v), "errors": self.errors[kind],
                       "p50_ms": round(percentile(v, 50), 2), "p95_ms": round(percentile(v, 95), 2)}
                for kind, v in sorted(self.ms.items())}


class Client:
    """One keep-alive connection, as a browser holds it (gzip accepted and decoded),
    opened with its first request: an idle new connection would hold a server thread
    (gunicorn's gthread waits up to 5 s for its first bytes). One idle for IDLE_REOPEN is
    opened anew, as browsers do, since the server closes idle ones after its keepalive."""

    def __init__(self, base: str, timeout: float) -> None:
        parts = urlsplit(base)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = time.monotonic()

    def send(self, req: Request) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, headers with lower-case names, decoded body, the server closes)."""
        if self.conn is not None and time.monotonic() - self.used > IDLE_REOPEN:
            self.close()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.used = time.monotonic()
        try:
            headers = {**req.headers, "Accept-Encoding": "gzip"}
            if req.chunked and req.body is not None:
                self.conn.request(req.method, req.path, body=_pieces(req.body), headers=headers,
                                  encode_chunked=True)
            else:
                self.conn.request(req.method, req.path, body=req.body, headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
        except BaseException:
            self.close()
            raise
        headers = {k.lower(): v for k, v in resp.getheaders()}
        closing = resp.will_close
        self.used = time.monotonic()
        if closing:
            self.close()
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return resp.status, headers, body, closing

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _pieces(body: bytes, size: int = 64 * 1024):
    """The body as an iterable, so http.client sends it chunked."""
    return (body[i:i + size] for i in range(0, len(body), size))


class Gate:
    """Lets the orchestrator pause every client between two requests (a quiet sample)."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self._cond = threading.Condition()
        self._paused = False
        self._waiting = 0
        self._gone = 0

    def checkpoint(self) -> None:
        with self._cond:
            if not self._paused:
                return
            self._waiting += 1
            self._cond.notify_all()
            while self._paused:
                self._cond.wait()
            self._waiting -= 1

    def leave(self) -> None:
        with self._cond:
            self._gone += 1
            self._cond.notify_all()

    def pause(self, timeout: float) -> bool:
        """True once every client waits (or has left)."""
        with self._cond:
            self._paused = True
            return self._cond.wait_for(lambda: self._waiting + self._gone >= self.clients,
                                       timeout)

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()


def run_client(seed: int, base: str, traffic: Traffic, rec: Recorder, gate: Gate,
               stop: threading.Event, timeout: float) -> None:
    """Requests back to back until ``stop``; each answer checked (200 or 304, then content).
    A twin request goes out on a second, fresh connection at the same moment too (a viewer
    that retries before its first attempt was answered)."""
    rng = random.Random(seed)
    client, second = Client(base, timeout), Client(base, timeout)
    try:
        while True:
            gate.checkpoint()
            if stop.is_set():
                return
            req = traffic.pick(rng)
            if not req.twin:
                exchange(client, req, rec)
                continue
            other = threading.Thread(target=exchange, args=(second, req, rec), daemon=True)
            other.start()
            exchange(client, req, rec)
            other.join(timeout + 10)
            second.close()  # a retry's connection: not kept (quiet samples see one per client)
    finally:
        client.close()
        second.close()
        gate.leave()


def exchange(client: Client, req: Request, rec: Recorder) -> None:
    """Send, time, check and record one request."""
    t0 = time.perf_counter()
    try:
        status, headers, body, closing = client.send(req)
    except Exception as exc:  # connection refused or reset, timeout, bad framing
        rec.record(req, (time.perf_counter() - t0) * 1000, None, f"{type(exc).__name__}: {exc}")
        return
    ms = (time.perf_counter() - t0) * 1000
    rec.closed(closing)
    rec.record(req, ms, status, _verdict(req, status, headers, body), body)


def _verdict(req: Request, status: int, headers: dict[str, str], body: bytes) -> str | None:
    if status == 304:
        return None
    if status != 200:
        return f"HTTP {status}"
    try:
        return req.check(status, headers, body)
    except Exception as exc:  # an answer the check cannot read is wrong too
        return f"unreadable answer: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- /proc sampling
@dataclass
class Sample:
    t: float                       # seconds since the soak began
    workers: dict[int, float]      # pid -> RSS MB
    fds: int                       # open descriptors of master + workers
    fd_kinds: Counter              # see sample()
    files: Counter                 # paths of the open files, names of the anon_inodes

    @property
    def rss_sum(self) -> float:
        return sum(self.workers.values())

    @property
    def fds_but_db(self) -> int:
        """Descriptors that must not grow (the index pools open connections lazily)."""
        return self.fds - self.fd_kinds["db"]

    @property
    def rss_max(self) -> float:
        return max(self.workers.values(), default=0.0)

    def brief(self) -> dict:
        return {"t": round(self.t), "rss_sum_mb": round(self.rss_sum, 1),
                "rss_max_mb": round(self.rss_max, 1), "fds": self.fds,
                "db": self.fd_kinds["db"]}


DB_FILE = re.compile(r"\.sqlite(-wal|-shm|-journal)?$")


def sample(master: int, t0: float, http_port: int, db_port: int | None) -> Sample:
    """RSS of the workers; descriptors of master + workers by kind: ``http`` (client
    connections and the listener), ``db`` (index connections: PostgreSQL sockets, SQLite
    files), other ``socket``, ``file``, ``pipe``, ``anon_inode``."""
    workers = children(master)
    ports = _tcp_ports()
    kinds: Counter = Counter()
    files: Counter = Counter()
    for pid in [master, *workers]:
        for kind, target in _descriptors(pid):
            if kind == "socket":
                local, remote = ports.get(target[8:-1], (0, 0))
                kind = "http" if local == http_port else "db" if remote == db_port else kind
            elif kind == "file" and DB_FILE.search(target):
                kind = "db"
            kinds[kind] += 1
            if kind in ("file", "anon_inode"):
                files[target] += 1
    return Sample(time.monotonic() - t0, {p: rss_mb(p) for p in workers},
                  sum(kinds.values()), kinds, files)


def _tcp_ports() -> dict[str, tuple[int, int]]:
    """socket inode -> (local port, remote port), from /proc/net/tcp{,6}."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            out[f[9]] = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16))
    return out


def _descriptors(pid: int) -> list[tuple[str, str]]:
    out = []
    root = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(root)
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(root / name)
        except OSError:
            continue  # closed meanwhile
        kind = re.match(r"(socket|pipe|anon_inode):", target)
        out.append((kind.group(1) if kind else "file", target))
    return out


class Sampler(threading.Thread):
    """Samples every ``interval`` s; notes any change in the set of workers (a restart)."""

    def __init__(self, master: int, t0: float, interval: float, http_port: int,
                 db_port: int | None) -> None:
        super().__init__(daemon=True, name="sampler")
        self.master, self.t0, self.interval = master, t0, interval
        self.ports = (http_port, db_port)
        self.samples: list[Sample] = []
        self.restarts: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.take()
            self._done.wait(self.interval)

    def take(self) -> Sample:
        s = sample(self.master, self.t0, *self.ports)
        if self.samples and set(s.workers) != set(self.samples[-1].workers):
            self.restarts.append(f"t={s.t:.0f}s workers {sorted(self.samples[-1].workers)} -> "
                                 f"{sorted(s.workers)}")
        self.samples.append(s)
        return s

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def scan_log(path: Path, shown: int = 6) -> dict:
    """Tracebacks, worker timeouts and 5xx access lines in the gateway's log."""
    bad = re.compile(r'Traceback|WORKER TIMEOUT|\[CRITICAL\]|\[ERROR\]|" 5\d\d ')
    lines = [line for line in path.read_text(errors="replace").splitlines() if bad.search(line)]
    return {"problems": len(lines), "first": lines[:shown], "log": str(path)}
