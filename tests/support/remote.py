"""Helpers for tests of the gateway in front of a PACS: settings with the PACS_* knobs,
multipart bodies split into parts, and a check that the cache holds no partial file."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import requests

from gateway.archive.local.archive import LocalArchive
from gateway.config import Settings

from .procs import REPO, Proc, free_port, port_open, wait_until


def remote_settings(data_dir: Path, pacs: str, **extra: Any) -> Any:
    """Settings for a RemoteArchive. Keys that ``Settings`` does not know yet (the PACS_*
    timeouts, pool size, move port...) are read with getattr, so a namespace carries them."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    known = {k: v for k, v in extra.items() if k in fields}
    base = Settings().replace(**{"data_dir": data_dir, "pacs": pacs, "ae_title": "TCIAGW", **known})
    unknown = {k: v for k, v in extra.items() if k not in fields}
    if not unknown:
        return base
    values = {f: getattr(base, f) for f in fields}
    return SimpleNamespace(**values, **unknown, index_url=base.index_url)


def multipart_parts(response: requests.Response) -> list[bytes]:
    """Bodies of a multipart/related response (PS3.18 8.7.1.2)."""
    ctype = response.headers["Content-Type"]
    boundary = next(p.split("=", 1)[1].strip('"') for p in ctype.split(";")
                    if p.strip().startswith("boundary="))
    out = []
    for chunk in response.content.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _sep, body = chunk.partition(b"\r\n\r\n")
        out.append(body[:-2] if body.endswith(b"\r\n") else body)
    return out


def cache_consistent(cache: LocalArchive) -> bool:
    """No partial instance anywhere: no temp file left, every stored file indexed and
    readable to its end, every indexed file present with its recorded size."""
    files = cache.files
    if list(files.tmp.glob("*.part")):
        return False
    indexed = {}
    with cache.index.engine.connect() as conn:
        from gateway.archive.local.schema import instances
        for path, size in conn.execute(instances.select().with_only_columns(
                instances.c.path, instances.c.size)):
            indexed[str(files.local_path(path))] = size
    on_disk = {str(p) for p in files.files.rglob("*.dcm")}
    if on_disk != set(indexed):
        return False
    for path, size in indexed.items():
        if Path(path).stat().st_size != size:
            return False
        pydicom.dcmread(path).PixelData  # noqa: B018 - raises on a truncated file
    return True


@dataclass
class Scp:
    port: int
    proc: Proc


def start_scp(data_dir: Path, log_dir: Path, *, known_aes: str = "", port: int | None = None,
              allowed: str = "", aet: str = "TCIAGW",
              extra_env: dict[str, str] | None = None) -> Scp:
    """`python -m gateway dimse` on a free loopback port, ready when the port answers."""
    port = port or free_port()
    env = {"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_DIMSE_BIND": f"127.0.0.1:{port}",
           "GATEWAY_AE_TITLE": aet, "GATEWAY_KNOWN_AES": known_aes,
           "GATEWAY_LOG_LEVEL": "WARNING"}
    if allowed:
        env["GATEWAY_DIMSE_ALLOWED_AES"] = allowed
    env.update(extra_env or {})
    proc = Proc([sys.executable, "-m", "gateway", "dimse"], log_dir / f"scp-{port}.log", env,
                cwd=REPO).start()
    try:
        wait_until(lambda: port_open(port), timeout=30, what="gateway SCP", proc=proc)
    except BaseException:
        proc.stop()
        raise
    return Scp(port, proc)
