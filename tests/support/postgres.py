"""A real PostgreSQL (Debian `postgresql`) in a temp dir on a free loopback port.

initdb + postgres run as the `postgres` system user when we are root (PostgreSQL
refuses to run as root); readiness by polling a connection; stopped by PID.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .procs import Proc, free_port, wait_until


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"{name} missing: apt-get install postgresql")
    return found[-1]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Postgres:
    root: Path
    port: int
    proc: Proc

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(log_dir: Path) -> Postgres:
    """In a fresh dir under the system temp dir (the postgres user must reach it)."""
    root = Path(tempfile.mkdtemp(prefix="tcia-pg-"))
    data = root / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(_as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync"]), check=True, capture_output=True)
    port = free_port()
    proc = Proc(_as_postgres([_bin("postgres"), "-D", str(data), "-p", str(port),
                              "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                              "-c", "fsync=off"]), log_dir / f"postgres-{port}.log").start()
    pg = Postgres(root, port, proc)

    def ready() -> bool:
        with psycopg.connect(pg.url(), connect_timeout=2):
            return True

    wait_until(ready, timeout=60, what="postgres", proc=proc)
    return pg
