"""Rewrite the published OHIF build (public path ``/``) to live under ``/viewer/``.

The npm build of ``@ohif/app`` hard-codes its public path as ``/`` in several places
(docs/viewer.md, "Rewrites", lists them). Each place is found by *searching* for the string, never
by a bundle hash, so a new build either rewrites cleanly or fails naming the file
and the string that was not there. Every pattern matches only the un-rewritten
form, so applying the rewrites twice changes nothing (idempotent).
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import PREFIX

_P = re.escape(PREFIX)                 # "/viewer/"
_NOT_YET = f"(?!/|{re.escape(PREFIX[1:])})"  # after a leading "/": not "//" nor "viewer/"


class RewriteError(RuntimeError):
    """A string the rewrite needs is missing: the build is not the one we know."""


@dataclass(frozen=True)
class Rewrite:
    """One search-and-replace over the files matching ``include`` (top level of dist)."""

    name: str
    include: str          # glob, relative to the build root
    searched: str         # the literal a human would grep for (for error messages)
    pattern: str          # regex of the un-rewritten form only
    replacement: str      # re.sub replacement
    applied: str          # regex proving the rewritten form is present
    why: str
    exclude: str | None = None
    required: bool = True
    needs: str | None = None      # one rewritten file must also match this
    needs_what: str = ""

    def files(self, root: Path) -> list[Path]:
        found = sorted(p for p in root.glob(self.include) if p.is_file())
        if self.exclude:
            found = [p for p in found if not fnmatch.fnmatch(p.name, self.exclude)]
        return found


_PUBLIC_PATH = r'(__webpack_require__\.p\s*=\s*)(["\'])/\2'
_PUBLIC_PATH_DONE = rf'__webpack_require__\.p\s*=\s*(["\']){_P}\1'

REWRITES: tuple[Rewrite, ...] = (
    Rewrite("index-public-url", "index.html", 'window.PUBLIC_URL="/"',
            r'(window\.PUBLIC_URL\s*=\s*)(["\'])/\2', rf"\1\2{PREFIX}\2",
            rf'window\.PUBLIC_URL\s*=\s*(["\']){_P}\1',
            "OHIF resolves assets and its default router base from it"),
    Rewrite("index-asset-urls", "index.html", ' src="/ and  href="/',
            rf'(\s(?:src|href)=)(["\'])/{_NOT_YET}', rf"\1\2{PREFIX}",
            rf'\s(?:src|href)=["\']{_P}',
            "app-config.js, init-service-worker.js, the app bundle, CSS and icons"),
    Rewrite("app-public-path", "app.bundle.*.js", '__webpack_require__.p = "/"',
            _PUBLIC_PATH, rf"\1\2{PREFIX}\2", _PUBLIC_PATH_DONE,
            "webpack loads every lazy chunk, worker and image from it"),
    Rewrite("worker-public-path", "*.js", '__webpack_require__.p = "/"',
            _PUBLIC_PATH, rf"\1\2{PREFIX}\2", _PUBLIC_PATH_DONE,
            "worker bundles carry their own webpack runtime; the image decoder's "
            "loads its codec .wasm and chunks from it",
            exclude="app.bundle.*.js",
            needs=r'__webpack_require__\.p\s*\+\s*["\'][^"\']+\.wasm["\']',
            needs_what="the image decoder worker (a bundle loading codec .wasm)"),
    Rewrite("css-font-urls", "app.bundle.css", "url(/",
            rf'url\((["\']?)/{_NOT_YET}', rf"url(\1{PREFIX}", rf'url\((["\']?){_P}',
            "the UI fonts (.woff2)"),
    Rewrite("service-worker-scope", "init-service-worker.js", "registration.unregister()",
            r"(\{\s*)(\w+)\.unregister\(\)",
            rf'\1if (\2.scope.indexOf(location.origin + "{PREFIX}") === 0) \2.unregister()',
            rf'\.scope\.indexOf\(location\.origin \+ "{_P}"\) === 0\)',
            "it unregisters every service worker of the origin; keep it to /viewer/"),
    Rewrite("microscopy-path", "app.bundle.*.js", "'/dicom-microscopy-viewer/",
            r"""(["'])/(dicom-microscopy-viewer/)""", rf"\1{PREFIX}\2",
            rf"""["']{_P}dicom-microscopy-viewer/""",
            "slide microscopy (SM) viewer import; not needed for CT/CR/DX", required=False),
    Rewrite("manifest-icons", "manifest.json", '"src": "/',
            rf'("src"\s*:\s*")/{_NOT_YET}', rf"\1{PREFIX}", rf'"src"\s*:\s*"{_P}',
            "web app manifest icons", required=False),
)


@dataclass
class Outcome:
    """Which files one rewrite touched (count of replacements; 0 = already rewritten)."""

    rewrite: Rewrite
    files: dict[str, int] = field(default_factory=dict)

    @property
    def replaced(self) -> int:
        return sum(self.files.values())


def apply_rewrites(root: Path, rewrites: tuple[Rewrite, ...] = REWRITES) -> list[Outcome]:
    """Apply every rewrite under ``root``; raise ``RewriteError`` if a required one misses."""
    return [_apply(root, rw) for rw in rewrites]


def _apply(root: Path, rw: Rewrite) -> Outcome:
    outcome = Outcome(rw)
    candidates = rw.files(root)
    needs_met = rw.needs is None
    for path in candidates:
        text = path.read_text(encoding="utf-8")
        new, count = re.subn(rw.pattern, rw.replacement, text)
        if count:
            _write_atomic(path, new)
        if count or re.search(rw.applied, new):
            outcome.files[path.name] = count
            needs_met = needs_met or (rw.needs is not None and bool(re.search(rw.needs, new)))
    if rw.required and not candidates:
        raise RewriteError(f"rewrite {rw.name!r}: no file matches {rw.include!r} in {root} "
                           f"(needed for {rw.why})")
    if rw.required and not outcome.files:
        names = ", ".join(p.name for p in candidates[:5])
        raise RewriteError(f"rewrite {rw.name!r}: {rw.searched!r} not found in {names} "
                           f"(nor its rewritten form); needed for {rw.why}. This OHIF build "
                           f"differs from the one gateway/viewer/rewrites.py knows.")
    if rw.required and not needs_met:
        raise RewriteError(f"rewrite {rw.name!r}: none of the files rewritten "
                           f"({', '.join(outcome.files)}) is {rw.needs_what}")
    return outcome


def leftovers(root: Path, rewrites: tuple[Rewrite, ...] = REWRITES) -> list[str]:
    """Un-rewritten occurrences still present (an empty list after a good install)."""
    found = []
    for rw in rewrites:
        for path in rw.files(root):
            n = len(re.findall(rw.pattern, path.read_text(encoding="utf-8")))
            if n:
                found.append(f"{path.name}: {n} x {rw.searched!r} ({rw.name})")
    return found


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
