"""A real Orthanc (Debian `orthanc` 1.10 + `orthanc-dicomweb`) for interop tests and benches.

DESIGN.md §7: a JSON config written per run (free loopback ports, storage in a
temp dir, DICOMweb plugin on), `TCP_NODELAY=1` in its environment (Orthanc's
DCMTK leaves Nagle on otherwise), readiness by polling `/system`, stopped by
PID. Orthanc 1.10 binds its DICOM port on every interface: we only ever
connect over 127.0.0.1.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import requests

from . import dcmtk
from .procs import Proc, free_port, http_ok, port_open, wait_until

ORTHANC = "/usr/sbin/Orthanc"


def dicomweb_plugin() -> str:
    """The plugin's shared object, as `dpkg -L orthanc-dicomweb` lists it."""
    out = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True,
                         check=True).stdout.split()
    found = [p for p in out if p.endswith(".so") and "DicomWeb" in p]
    if not found:
        raise FileNotFoundError("orthanc-dicomweb plugin not found (dpkg -L orthanc-dicomweb)")
    return found[0]


@dataclass
class Orthanc:
    root: Path
    aet: str
    http_port: int
    dicom_port: int
    config: dict[str, Any]
    log_dir: Path
    proc: Proc | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        """``AET@127.0.0.1:port``, the form GATEWAY_PACS takes."""
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def start(self, timeout: float = 60) -> "Orthanc":
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(self.config, indent=2))
        self.proc = Proc([ORTHANC, str(path)], self.log_dir / f"orthanc-{self.http_port}.log",
                         {"TCP_NODELAY": "1"}, cwd=self.root).start()
        try:
            wait_until(lambda: http_ok(self.url + "/system") and port_open(self.dicom_port),
                       timeout=timeout, what="orthanc", proc=self.proc)
        except BaseException:
            self.proc.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crashed PACS."""
        if self.proc:
            self.proc.kill()

    def get(self, path: str, **kw: Any) -> Any:
        r = requests.get(self.url + path, timeout=60, **kw)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any) -> Any:
        r = requests.post(self.url + path, json=body, timeout=120)
        r.raise_for_status()
        return r.json() if r.content else None

    def instance_file(self, sop_uid: str) -> bytes:
        """The Part 10 file Orthanc stores for a SOPInstanceUID."""
        ids = requests.post(self.url + "/tools/lookup", data=sop_uid, timeout=30).json()
        ident = next(i["ID"] for i in ids if i["Type"] == "Instance")
        r = requests.get(f"{self.url}/instances/{ident}/file", timeout=60)
        r.raise_for_status()
        return r.content

    def load(self, paths: Sequence[Path]) -> int:
        """Store files/folders with DCMTK storescu; returns Orthanc's instance count."""
        dcmtk.storescu(self.aet, self.dicom_port, paths)
        return int(self.get("/statistics")["CountInstances"])


def orthanc_config(root: Path, *, aet: str, http_port: int, dicom_port: int,
                   modalities: Mapping[str, tuple[str, str, int]] | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """A minimal, explicit config: everything a test relies on is written here."""
    config: dict[str, Any] = {
        "Name": f"test-{aet}",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": False,
        "StorageCompression": False,
        "Plugins": [dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "DicomModalities": {name: list(v) for name, v in (modalities or {}).items()},
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": True,
        "DicomScpTimeout": 30,
        "StorageAccessOnFind": "Always",
        "DeidentifyLogs": False,
        "StableAge": 2,
    }
    config.update(overrides)
    return config


def prepare_orthanc(root: Path, log_dir: Path, *, aet: str = "ORTHANC",
                    modalities: Mapping[str, tuple[str, str, int]] | None = None,
                    **overrides: Any) -> Orthanc:
    """An Orthanc on free loopback ports, configured but not started (tests that need
    the ports before the PACS is up, e.g. "PACS down at start")."""
    root.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = orthanc_config(root, aet=aet, http_port=http_port, dicom_port=dicom_port,
                            modalities=modalities, **overrides)
    return Orthanc(root, aet, http_port, dicom_port, config, log_dir)


def start_orthanc(root: Path, log_dir: Path, *, aet: str = "ORTHANC",
                  modalities: Mapping[str, tuple[str, str, int]] | None = None,
                  **overrides: Any) -> Orthanc:
    """Start Orthanc on free loopback ports with a config written for this run."""
    return prepare_orthanc(root, log_dir, aet=aet, modalities=modalities, **overrides).start()


def dataset_bytes(part10: bytes) -> bytes:
    """A Part 10 file without preamble and File Meta group: the bytes two archives
    must agree on (each writes its own meta: implementation UID, source AE...)."""
    assert part10[128:132] == b"DICM", "not a Part 10 file"
    # (0002,0000) UL group length, explicit VR little endian (PS3.10 7.1)
    assert part10[132:136] == b"\x02\x00\x00\x00"
    group_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + group_length:]
