"""N gateway nodes (gunicorn) on one PostgreSQL and one SeaweedFS bucket, nginx in front
(deploy/nginx.upstream.conf), all on loopback."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.procs import REPO, GatewayServer, Proc, free_port, start_gateway, wait_until
from tests.support.s3gateway import s3_env

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass
class Topology:
    root: Path
    log_dir: Path
    env: dict[str, str]
    nodes: list[GatewayServer] = field(default_factory=list)
    nginx: Proc | None = None
    base: str = ""

    def add_node(self, workers: int = 1) -> GatewayServer:
        """One more node: its own DATA_DIR (temp files, hot cache), the shared index/bucket."""
        data = self.root / f"node{len(self.nodes) + 1}"
        data.mkdir(parents=True)
        node = start_gateway(data, self.log_dir, workers=workers, env=self.env)
        self.nodes.append(node)
        return node

    def start_nodes(self, count: int) -> None:
        """``count`` nodes started at once (schema creation races unless it is locked)."""
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            dirs = []
            for n in range(count):
                d = self.root / f"node{len(self.nodes) + n + 1}"
                d.mkdir(parents=True)
                dirs.append(d)
            futures = [pool.submit(start_gateway, d, self.log_dir, workers=1, env=self.env)
                       for d in dirs]
            self.nodes += [f.result() for f in futures]

    def start_nginx(self) -> str:
        """nginx in front of the nodes; called again, it reloads the upstream list in place
        (SIGHUP: the same port, requests in flight finish)."""
        port = int(self.base.rsplit(":", 1)[1]) if self.nginx is not None else free_port()
        conf = (REPO / "deploy" / "nginx.upstream.conf").read_text()
        servers = "\n        ".join(f"server 127.0.0.1:{n.port} max_fails=1 fail_timeout=2s;"
                                   for n in self.nodes)
        nroot = self.root / "nginx"
        nroot.mkdir(exist_ok=True)
        for key, value in {"@PREFIX@": str(nroot), "@UPSTREAMS@": servers,
                           "@LISTEN@": f"127.0.0.1:{port}"}.items():
            conf = conf.replace(key, value)
        (nroot / "nginx.conf").write_text(conf)
        directives = "daemon off; master_process on;" + (" user root;" if os.geteuid() == 0 else "")
        if self.nginx is not None:
            os.kill(self.nginx.pid, signal.SIGHUP)
            time.sleep(1.0)  # the new workers take over
            return self.base
        self.nginx = Proc([NGINX, "-c", str(nroot / "nginx.conf"), "-p", str(nroot), "-g",
                           directives], self.log_dir / f"nginx-{port}.log").start()
        self.base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(self.base + "/healthz", timeout=2).status_code == 200,
                   timeout=30, what="nginx", proc=self.nginx)
        return self.base

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for node in self.nodes:
            node.stop()


def topology(root: Path, log_dir: Path, database_url: str, store: Any, bucket: str,
             **settings: Any) -> Topology:
    env = {**s3_env(store, f"s3://{bucket}/archive", **settings),
           "GATEWAY_DATABASE_URL": database_url, "GATEWAY_TRUST_PROXY": "true"}
    return Topology(root, log_dir, env)


def restart_postgres(pg: Any, log_dir: Path, *, down_for: float = 0.0,
                     while_down: Any = None) -> None:
    """Fast shutdown (SIGINT: clients are cut, as a crash or a failover does), ``while_down``
    run, then the same server again on its data dir and port."""
    import psycopg

    from tests.support.postgres import _as_postgres, _bin
    os.killpg(pg.proc.pid, signal.SIGINT)
    pg.proc.popen.wait(timeout=30)
    if while_down is not None:
        while_down()
    time.sleep(down_for)
    argv = _as_postgres([_bin("postgres"), "-D", str(pg.root / "pgdata"), "-p", str(pg.port),
                         "-c", "listen_addresses=127.0.0.1", "-c",
                         f"unix_socket_directories={pg.root}", "-c", "fsync=off"])
    pg.proc = Proc(argv, log_dir / f"postgres-{pg.port}-again.log").start()

    def ready() -> bool:
        with psycopg.connect(pg.url(), connect_timeout=2):
            return True

    wait_until(ready, timeout=60, what="postgres again", proc=pg.proc)
