"""Start real servers on loopback, wait for readiness by polling, stop them by PID."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
               proc: "Proc | None" = None, interval: float = 0.05) -> None:
    """Poll ``check`` until true; fail with the process log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}\n{proc.log_tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{tail}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=2).status_code == 200


@dataclass
class Proc:
    """A child process in its own process group, logging to a file."""

    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen = field(init=False)

    def start(self) -> "Proc":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")
        self.popen = subprocess.Popen(list(self.argv), stdout=fh, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env}, cwd=self.cwd,
                                      start_new_session=True)
        fh.close()
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group by PID, SIGKILL if it lingers."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL at once (to simulate a crash)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=15)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class GatewayServer:
    url: str
    port: int
    data_dir: Path
    proc: Proc

    def stop(self) -> None:
        self.proc.stop()


def start_gateway(data_dir: Path, log_dir: Path, *, workers: int | None = 2,
                  env: Mapping[str, str] | None = None, timeout: float = 60,
                  app: str = "gateway.wsgi:app") -> GatewayServer:
    """The real thing: gunicorn with the gateway's config module (what ``serve`` uses) on a
    free loopback port.
    ``workers=None`` keeps the production default (WORKERS)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_HTTP_BIND": f"127.0.0.1:{port}",
                "GATEWAY_PUBLIC_URL": url, "GATEWAY_LOG_LEVEL": "WARNING", **(env or {})}
    if workers is not None:
        full_env["GATEWAY_WORKERS"] = str(workers)
    proc = Proc([sys.executable, "-m", "gunicorn", "-c", "python:gateway.serving.gunicorn_conf",
                 app], log_dir / f"gateway-{port}.log", full_env, cwd=REPO).start()
    try:
        wait_until(lambda: http_ok(url + "/healthz"), timeout=timeout, what="gateway", proc=proc)
    except BaseException:
        proc.stop()
        raise
    return GatewayServer(url, port, data_dir, proc)
