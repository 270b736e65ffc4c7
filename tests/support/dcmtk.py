"""DCMTK command-line tools as real peers (Debian `dcmtk`).

The tools are resolved in /usr/bin and checked to be DCMTK: pynetdicom installs
console scripts with the same names (`storescu`, `findscu`, ...) that a pyenv
shim may put first on PATH, and a test against those would prove nothing.
"""
from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pydicom import dcmread
from pydicom.dataset import Dataset

from .procs import Proc, port_open, wait_until

DCMTK_BIN = Path("/usr/bin")


@functools.cache
def tool(name: str) -> str:
    """Absolute path of a DCMTK tool; fails loudly if it is missing or not DCMTK."""
    path = DCMTK_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: install the Debian package `dcmtk`")
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10)
    if "$dcmtk" not in out.stdout:
        raise RuntimeError(f"{path} is not DCMTK: {out.stdout[:200]!r}")
    return str(path)


def run(name: str, args: Sequence[str], *, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a DCMTK tool; on failure the assertion message carries its output."""
    proc = subprocess.run([tool(name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def peer_args(called: str, port: int, calling: str = "DCMTK") -> list[str]:
    return ["-aet", calling, "-aec", called, "127.0.0.1", str(port)]


# storescu proposes one compressed syntax per run (plus the uncompressed ones): files are
# sent in groups by transfer syntax so that none is transcoded on the way.
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1.99": "-xd",
}


def dicom_files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)]
    return out


def storescu(called: str, port: int, paths: Sequence[Path], *, calling: str = "DCMTK",
             check: bool = True) -> list[subprocess.CompletedProcess]:
    """Send files/folders (recursively) in their own transfer syntaxes, one run per syntax."""
    groups: dict[str, list[Path]] = {}
    for f in dicom_files(paths):
        ts = str(dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(STORESCU_PROPOSE.get(ts, ""), []).append(f)
    runs = []
    for flag, files in sorted(groups.items()):
        for i in range(0, len(files), 400):
            args = ([flag] if flag else []) + [*peer_args(called, port, calling), *files[i:i + 400]]
            runs.append(run("storescu", args, check=check, timeout=600))
    return runs


@dataclass
class FindResult:
    responses: list[Dataset]
    output: str  # DCMTK's verbose log: the final status is in "Received Final Find Response (...)"

    @property
    def final_status(self) -> str:
        for line in self.output.splitlines():
            if "Received Final Find Response" in line:
                return line.split("(", 1)[1].rstrip(")")
        return ""


def findscu(called: str, port: int, keys: dict[str, str], out_dir: Path, *, root: str = "S",
            calling: str = "DCMTK") -> FindResult:
    """C-FIND with ``-k key=value`` pairs (empty value: return key); the responses,
    read back from the ``-X`` files, and the log that names the final status."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("rsp*.dcm"):
        old.unlink()
    args = ["-v", f"-{root}", "-X", "-od", str(out_dir), *peer_args(called, port, calling)]
    for key, value in keys.items():
        args += ["-k", f"{key}={value}" if value != "" else key]
    proc = run("findscu", args)
    return FindResult([dcmread(p) for p in sorted(out_dir.glob("rsp*.dcm"))],
                      proc.stdout + proc.stderr)


def getscu(called: str, port: int, keys: dict[str, str], out_dir: Path, *, calling: str = "DCMTK",
           check: bool = True) -> subprocess.CompletedProcess:
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["-S", "-od", str(out_dir), *peer_args(called, port, calling)]
    for key, value in keys.items():
        args += ["-k", f"{key}={value}"]
    return run("getscu", args, check=check)


def movescu(called: str, port: int, keys: dict[str, str], destination: str, *,
            calling: str = "DCMTK", check: bool = True) -> subprocess.CompletedProcess:
    args = ["-S", "--move", destination, *peer_args(called, port, calling)]
    for key, value in keys.items():
        args += ["-k", f"{key}={value}"]
    return run("movescu", args, check=check)


def echoscu(called: str, port: int, *, calling: str = "DCMTK",
            check: bool = True) -> subprocess.CompletedProcess:
    return run("echoscu", peer_args(called, port, calling), check=check, timeout=30)


def start_storescp(port: int, out_dir: Path, log: Path, *, aet: str = "STORESCP") -> Proc:
    """A DCMTK Storage SCP accepting every syntax, writing files to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = Proc([tool("storescp"), "-aet", aet, "+xa", "-od", str(out_dir), str(port)],
                log).start()
    try:
        wait_until(lambda: port_open(port), timeout=20, what="storescp", proc=proc)
    except BaseException:
        proc.stop()
        raise
    return proc
