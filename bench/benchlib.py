"""Measurement tools shared by the benchmarks: a lean keep-alive HTTP timer, wrk,
process RSS, and the loopback ceiling. Numbers are for ratios within one run: the
machine is shared by client and server."""
from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Samples:
    ms: list[float]
    nbytes: int = 0  # bytes of the last answer

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return percentile(self.ms, 95)


class Client:
    """One keep-alive connection, as a viewer holds it; reads every body to the end."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, int]:
        for attempt in (0, 1):
            try:
                self.conn.request("GET", self.prefix + path, headers=dict(headers or {}))
                resp = self.conn.getresponse()
                n = 0
                while chunk := resp.read(1 << 20):
                    n += len(chunk)
                return resp.status, n
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def timed(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[float, int]:
        t0 = time.perf_counter()
        status, n = self.get(path, headers)
        ms = (time.perf_counter() - t0) * 1000
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        return ms, n

    def close(self) -> None:
        self.conn.close()


def wrk(url: str, headers: Mapping[str, str] | None = None, *, seconds: int = 10,
        threads: int = 2, connections: int = 8) -> dict[str, float]:
    """req/s, MB/s and latency percentiles from ``wrk -t2 -c8 --latency``."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk not found: apt-get install wrk")
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk {url}: {errors.group(1)} non-2xx answers\n{out}")
    lat = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}
    return {"rps": rps, "mbps": float(m.group(1)) * scale, "p50": lat["50"], "p99": lat["99"]}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def loopback_ceiling(path: Path, rounds: int = 5) -> float:
    """MB/s of a page-cached file sent with sendfile() by a bare HTTP responder to the
    same client the retrieve rows use (curl): the physical ceiling for bulk bytes on
    this machine (the 'raw dd/loopback copy' row). A Python reader would be the
    bottleneck itself, so the client is curl, as for the servers."""
    size = path.stat().st_size
    path.read_bytes()  # page cache
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n"
            "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n").encode()

    def serve() -> None:
        for _ in range(rounds):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(head)
            with open(path, "rb") as fh:
                offset = 0
                while offset < size:
                    offset += os.sendfile(conn.fileno(), fh.fileno(), offset, size - offset)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    rates = []
    for _ in range(rounds):
        ms, nbytes = curl_mbps(f"http://127.0.0.1:{port}/", {})
        rates.append(nbytes / 1e6 / (ms / 1000))
    thread.join(30)
    server.close()
    return statistics.median(rates)


def curl_mbps(url: str, headers: Mapping[str, str]) -> tuple[float, int]:
    """(ms, bytes) of one download with curl (a lean C client, body to /dev/null)."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total} %{http_code}"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout.split()
    if out[2] != "200":
        raise RuntimeError(f"curl {url}: {out[2]}")
    return float(out[1]) * 1000, int(out[0])
