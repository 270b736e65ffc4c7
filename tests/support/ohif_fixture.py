"""A miniature ``@ohif/app`` build: the strings the viewer install rewrites, as the real
3.13.2 build spells them, in files named like the real ones. Small enough for unit
and route tests; the e2e test uses the real build."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

APP_BUNDLE = "app.bundle.0123456789abcdef.js"
DECODER = "8097.bundle.fedcba9876543210.js"
PLAIN_CHUNK = "1673.bundle.1111111111111111.js"
WASM = "00112233445566ff.wasm"
FONT = "a34f9d1faa5f3315.woff2"

INDEX_HTML = (
    '<!doctype html><html lang="en"><head><meta charset="UTF-8">'
    '<script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><link rel="icon shortcut" href="/assets/favicon.ico">'
    '<link rel="preconnect" href="//cdn.example.org"><link rel="help" href="https://ohif.org/">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
    '<title>OHIF Viewer</title>'
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    f'<script defer src="/{APP_BUNDLE}"></script><link href="/app.bundle.css" rel="stylesheet">'
    '</head><body><div id="root"></div></body></html>'
)
APP_JS = (
    "/* " + "OHIF viewer bundle " * 100 + "*/\n"      # > 1 KB: precompressed at install
    '// webpack/runtime/public_path\n(() => {\n__webpack_require__.p = "/";\n})();\n'
    'const CT_AAA = (__webpack_require__.p + "assets/images/CT-AAA.png");\n'
    "const imported = await window.browserImportFunction("
    "'/dicom-microscopy-viewer/dicomMicroscopyViewer.min.js');\n"
)
DECODER_JS = (
    f'module.exports = __webpack_require__.p + "{WASM}";\n'
    '// webpack/runtime/public_path\n(() => {\n__webpack_require__.p = "/";\n})();\n'
    "importScripts(__webpack_require__.p + __webpack_require__.u(chunkId));\n"
)
PLAIN_CHUNK_JS = ("const workerFn = () => new Worker(new URL(/* worker import */"
                  "__webpack_require__.p + __webpack_require__.u(8547), __webpack_require__.b));\n")
APP_CSS = (f'@font-face{{font-family:Inter;src:url(/{FONT}) format("woff2")}}'
           f".x{{background:url(/{FONT})}}")
SERVICE_WORKER_JS = (
    "navigator.serviceWorker.getRegistrations().then(function (registrations) {\n"
    "  for (let registration of registrations) {\n"
    "    registration.unregister();\n"
    "  }\n"
    "});\n"
)
MANIFEST = json.dumps({"name": "OHIF Viewer", "start_url": "./index.html", "icons": [
    {"src": "/assets/android-chrome-36x36.png", "sizes": "36x36", "type": "image/png"}]}, indent=2)
WASM_BYTES = b"\0asm\x01\0\0\0" + bytes(4096)   # compressible, yet never gzipped

FILES: dict[str, str | bytes] = {
    "index.html": INDEX_HTML,
    APP_BUNDLE: APP_JS,
    DECODER: DECODER_JS,
    PLAIN_CHUNK: PLAIN_CHUNK_JS,
    "app.bundle.css": APP_CSS,
    "1602.css": ".y{color:red}",
    "init-service-worker.js": SERVICE_WORKER_JS,
    "manifest.json": MANIFEST,
    "app-config.js": "window.config = {routerBasename: null};\n",
    WASM: WASM_BYTES,
    FONT: b"wOF2fake",
    "assets/favicon.ico": b"\0\0\1\0",
    "assets/images/CT-AAA.png": b"\x89PNG\r\n\x1a\n",
}


def write_mini_build(root: Path) -> Path:
    """Write the miniature ``dist`` into ``root`` and return it."""
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def mini_tarball(out_dir: Path, version: str = "0.0.0-mini",
                 files: dict[str, str | bytes] | None = None) -> Path:
    """An ``npm pack``-shaped tarball (``package/dist/...``) of the miniature build."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ohif-app-{version}.tgz"
    entries = {f"package/dist/{k}": v for k, v in (files or FILES).items()}
    entries["package/package.json"] = json.dumps({"name": "@ohif/app", "version": version})
    with tarfile.open(path, "w:gz") as tar:
        for name, content in entries.items():
            data = content if isinstance(content, bytes) else content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
