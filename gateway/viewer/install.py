"""Install the published OHIF build into ``DATA_DIR/viewer`` (``tcia-gateway viewer install``).

Steps: ``npm pack @ohif/app@<version>`` into a temp dir (or take a tarball given for
offline installs), check its integrity against the pin, extract ``package/dist`` into
a staging dir next to the target, apply the rewrites (``rewrites.py``), verify the
result, gzip the text bundles once (``precompress.py``), then swap it into place so a
running gateway never serves half an install.
Re-running with the same version and tarball is a no-op that re-verifies.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import Settings
from . import PREFIX, viewer_root
from .precompress import precompress
from .rewrites import REWRITES, RewriteError, apply_rewrites, leftovers

PACKAGE = "@ohif/app"
DEFAULT_VERSION = "3.13.2"
# npm's "integrity" of the published tarballs we know (registry metadata; `npm pack --json`).
KNOWN_INTEGRITY = {
    "3.13.2": "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5"
              "xXZB9E8EA==",
}
MARKER = ".tcia-gateway-install.json"
# Bump when REWRITES or the install steps change, so an existing install is redone.
REWRITES_REVISION = 2
NPM_TIMEOUT = 900


class InstallError(RuntimeError):
    """The viewer could not be installed; the message says what to do."""


@dataclass
class InstallResult:
    version: str
    root: Path
    integrity: str
    rewrites: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False


Log = Callable[[str], None]


def install(settings: Settings, *, version: str = DEFAULT_VERSION, tarball: Path | None = None,
            force: bool = False, log: Log = lambda _m: None) -> InstallResult:
    """Fetch (or take) the OHIF tarball and install it rewritten for ``/viewer/``."""
    t0 = time.monotonic()
    target = viewer_root(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    pinned = KNOWN_INTEGRITY.get(version)
    if tarball is None and pinned and not force and _reusable(target, version, pinned, log):
        return InstallResult(version, target, pinned, seconds=time.monotonic() - t0, reused=True)
    with tempfile.TemporaryDirectory(prefix="ohif-pack-") as tmp:
        if tarball is None:
            log(f"fetching {PACKAGE}@{version} with npm pack")
            tarball = fetch_tarball(version, Path(tmp))
        integrity = check_integrity(tarball, version)
        if not force and _reusable(target, version, integrity, log):
            return InstallResult(version, target, integrity, seconds=time.monotonic() - t0,
                                 reused=True)
        result = _install_from(tarball, target, version, integrity, log)
    result.seconds = time.monotonic() - t0
    return result


def _reusable(target: Path, version: str, integrity: str, log: Log) -> bool:
    """The same build is installed with the current rewrites and still verifies."""
    current = read_marker(target)
    if not current or not _same_install(current, version, integrity):
        return False
    problems = verify(target)
    if problems:
        log("existing install fails verification; reinstalling: " + "; ".join(problems[:5]))
        return False
    log(f"{PACKAGE}@{version} already installed in {target}")
    return True


def _install_from(tarball: Path, target: Path, version: str, integrity: str,
                  log: Log) -> InstallResult:
    staging = Path(tempfile.mkdtemp(prefix=".viewer-staging-", dir=target.parent))
    try:
        log(f"extracting {tarball.name}")
        found = extract_dist(tarball, staging)
        if found != version:
            raise InstallError(f"{tarball} holds {PACKAGE}@{found}, not {version} "
                               f"(pass --version {found} to install it)")
        outcomes = apply_rewrites(staging)
        rewrites = {o.rewrite.name: o.files for o in outcomes}
        for o in outcomes:
            log(f"rewrite {o.rewrite.name}: {o.replaced} in {len(o.files)} file(s)")
        problems = verify(staging)
        if problems:
            raise InstallError("the rewritten build fails verification: " + "; ".join(problems))
        packed = precompress(staging)
        log(f"gzipped {packed.files} bundles: {packed.before / 1e6:.1f} MB -> "
            f"{packed.after / 1e6:.1f} MB (served to clients that accept gzip)")
        _write_marker(staging, version, integrity, rewrites)
        swap_into_place(staging, target)
    except RewriteError as exc:
        raise InstallError(str(exc)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"installed {PACKAGE}@{version} in {target}")
    return InstallResult(version, target, integrity, rewrites)


def fetch_tarball(version: str, dest: Path) -> Path:
    """``npm pack`` the pinned package into ``dest`` (npm verifies the registry integrity)."""
    npm = shutil.which("npm")
    if not npm:
        raise InstallError("npm not found: install Node.js + npm (Debian: apt-get install npm), "
                           "or give a tarball with --from-tarball")
    cmd = [npm, "pack", f"{PACKAGE}@{version}", "--json", "--ignore-scripts",
           "--pack-destination", str(dest)]
    try:
        done = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=NPM_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"npm pack timed out after {NPM_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise InstallError(f"npm pack {PACKAGE}@{version} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    try:
        filename = json.loads(done.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        filename = f"ohif-app-{version}.tgz"
    path = dest / filename
    if not path.is_file():
        raise InstallError(f"npm pack reported {filename} but {path} does not exist")
    return path


def check_integrity(tarball: Path, version: str) -> str:
    """The tarball's npm-style sha512 integrity; must equal the pin when we know one."""
    if not tarball.is_file():
        raise InstallError(f"tarball not found: {tarball}")
    digest = hashlib.sha512()
    with open(tarball, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    integrity = "sha512-" + base64.b64encode(digest.digest()).decode()
    pinned = KNOWN_INTEGRITY.get(version)
    if pinned and integrity != pinned:
        raise InstallError(f"{tarball}: integrity {integrity[:24]}… differs from the published "
                           f"{PACKAGE}@{version} ({pinned[:24]}…): refusing to install it")
    return integrity


def extract_dist(tarball: Path, dest: Path) -> str:
    """Extract ``package/dist/**`` into ``dest``; return the package.json version."""
    prefix = "package/dist/"
    try:
        with tarfile.open(tarball, "r:*") as tar:
            meta = tar.extractfile("package/package.json")
            version = json.load(meta)["version"] if meta else ""
            members = []
            for m in tar.getmembers():
                if m.name.startswith(prefix) and len(m.name) > len(prefix):
                    m.name = m.name[len(prefix):]
                    members.append(m)
            if not members:
                raise InstallError(f"{tarball} has no {prefix} (not an @ohif/app build)")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise InstallError(f"cannot read {tarball}: {exc}") from exc
    if not (dest / "index.html").is_file():
        raise InstallError(f"{tarball}: {prefix}index.html missing")
    return version


_WASM_REF = re.compile(r'__webpack_require__\.p\s*\+\s*["\']([^"\'/]+\.wasm)["\']')
_INDEX_REF = re.compile(r'\s(?:src|href)=["\']' + re.escape(PREFIX) + r'([^"\'?#]+)')


def verify(root: Path) -> list[str]:
    """Problems with an installed (or staged) build; empty when it will serve under /viewer/."""
    if not (root / "index.html").is_file():
        return [f"{root}/index.html missing"]
    problems = [f"not rewritten: {left}" for left in leftovers(root)]
    index = (root / "index.html").read_text(encoding="utf-8")
    for ref in sorted(set(_INDEX_REF.findall(index))):
        if not (root / ref).is_file():
            problems.append(f"index.html references {PREFIX}{ref}, which is not in the build")
    for bundle in root.glob("*.js"):
        for wasm in _WASM_REF.findall(bundle.read_text(encoding="utf-8")):
            if not (root / wasm).is_file():
                problems.append(f"{bundle.name} loads {wasm}, which is not in the build")
    return problems


def swap_into_place(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with two renames on one filesystem."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".viewer-old-", dir=target.parent))
        target.rename(old / "viewer")
    staging.rename(target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def read_marker(root: Path) -> dict | None:
    """What ``install`` recorded about the build in ``root`` (None: not installed by us)."""
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(root: Path, version: str, integrity: str,
                  rewrites: dict[str, dict[str, int]]) -> None:
    info = {"package": PACKAGE, "version": version, "integrity": integrity,
            "rewrites_revision": REWRITES_REVISION, "prefix": PREFIX,
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rewrites": rewrites}
    (root / MARKER).write_text(json.dumps(info, indent=2))


def _same_install(current: dict, version: str, integrity: str) -> bool:
    return (current.get("version") == version and current.get("integrity") == integrity
            and current.get("rewrites_revision") == REWRITES_REVISION
            and current.get("prefix") == PREFIX)


def status(settings: Settings) -> dict:
    """Installed version and health, for ``tcia-gateway viewer status``."""
    root = viewer_root(settings)
    marker = read_marker(root)
    installed = (root / "index.html").is_file()
    return {"root": str(root), "installed": installed,
            "version": (marker or {}).get("version"),
            "installed_at": (marker or {}).get("installed_at"),
            "problems": verify(root) if installed else [],
            "known_rewrites": [rw.name for rw in REWRITES]}
