"""The gateway as a new user installs it: a wheel in a fresh virtualenv, run from an empty folder
outside the source tree. ``synth`` + ``import`` (the clinical sheet is found in the folder) +
``serve --http`` (and ``--config`` with HTTP_BIND in the TOML file): every absolute link in a
QIDO result, a metadata document and FHIR Bundles starts with the address served on."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.support.procs import REPO, Proc, free_port, http_ok, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
VIEWER_EXTENSION = "urn:tcia-gateway:fhir:extension:imagingstudy-viewer-url"


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A virtualenv with the wheel (its dependencies from the system site), and a clean env:
    no PYTHONPATH, so nothing of the source tree can be imported."""
    root = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "GATEWAY_"))}
    src = root / "src"  # what a source distribution holds; the build leaves no trace in REPO
    shutil.copytree(REPO / "gateway", src / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w",
         str(root / "wheel")], cwd=root, env=env, timeout=600)
    (wheel,) = (root / "wheel").glob("tcia_gateway-*.whl")
    run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], root, env)
    python = root / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
         "--no-index", str(wheel)], root, env)
    where = run([str(python), "-c", "import gateway; print(gateway.__file__)"], root, env)
    assert where.strip().startswith(str(root / "venv")), where  # the wheel, not the sources
    return {"bin": root / "venv" / "bin", "env": env, "root": root}


@pytest.fixture(scope="module")
def loaded(installed: dict[str, Any]) -> dict[str, Any]:
    """From an empty folder: synth a small cohort, import it (images, then the sheet)."""
    work = installed["root"] / "empty"
    work.mkdir()
    cli = str(installed["bin"] / "tcia-gateway")
    run([cli, "synth", "cohort", "--patients", "3", "--xr-size", "128", "--ct-slices", "8"],
        work, installed["env"])
    out = run([cli, "import", "cohort", "--workers", "1"], work, installed["env"])
    return {**installed, "work": work, "cli": cli, "import_output": out}


@pytest.fixture
def serving(loaded: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[str]:
    """``serve --http`` or ``--config`` with HTTP_BIND: the base URL, once it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**loaded["env"], "GATEWAY_WORKERS": "1"}
    if request.param == "--http":
        argv = [loaded["cli"], "serve", "--http", f"127.0.0.1:{port}"]
    else:
        config = loaded["work"] / "gateway.toml"
        config.write_text(f'HTTP_BIND = "127.0.0.1:{port}"\nWORKERS = 1\n')
        argv = [loaded["cli"], "--config", str(config), "serve"]
    proc = Proc(argv, loaded["root"] / f"serve-{port}.log", env, cwd=loaded["work"]).start()
    try:
        wait_until(lambda: http_ok(base + "/healthz"), timeout=120, what="serve", proc=proc)
        yield base
    finally:
        proc.stop()


def test_import_finds_the_clinical_sheet_and_rejects_nothing(loaded: dict[str, Any]) -> None:
    out = loaded["import_output"]
    assert " 0 rejected" in out and "rejected " not in out.replace(" 0 rejected", "")
    assert "clinical: 3 patient rows" in out and "COVID_19_AR_ClinicalCorrelates.xlsx" in out


def links(node: Any, keys: tuple[str, ...]) -> Iterator[str]:
    """Values of ``keys`` anywhere in a JSON document, and DICOM JSON values of RetrieveURL."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            elif key == "00081190" and isinstance(value, dict):
                yield from value.get("Value", [])
            elif key == "extension" and isinstance(value, list):
                yield from (e["valueUrl"] for e in value if e.get("url") == VIEWER_EXTENSION)
            else:
                yield from links(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from links(item, keys)


@pytest.mark.parametrize("serving", ["--http", "--config"], indirect=True)
def test_every_link_points_at_the_served_address(serving: str) -> None:
    get = lambda path, **kw: requests.get(serving + path, timeout=30, **kw)  # noqa: E731
    studies = get("/dicomweb/studies").json()
    assert len(studies) >= 3
    series = get("/dicomweb/series").json()
    study, uid = series[0]["0020000D"]["Value"][0], series[0]["0020000E"]["Value"][0]
    metadata = get(f"/dicomweb/studies/{study}/series/{uid}/metadata").json()
    patients = get("/fhir/Patient", headers={"Accept": "application/fhir+json"}).json()
    assert patients["total"] == 3
    imaging = get("/fhir/ImagingStudy?_include=ImagingStudy:endpoint").json()
    found = {
        "RetrieveURL": list(links(studies + series, ())),
        "BulkDataURI": list(links(metadata, ("BulkDataURI",))),
        "FHIR links": list(links(patients, ("url", "fullUrl")))
        + list(links(imaging, ("url", "fullUrl", "address"))),
    }
    for what, urls in found.items():
        assert urls, f"no {what} to check"
        wrong = [u for u in urls if not u.startswith(serving + "/")]
        assert not wrong, f"{what} not on {serving}: {wrong[:3]}"
    addresses = [e["resource"]["address"] for e in imaging["entry"]
                 if e["resource"]["resourceType"] == "Endpoint"]
    assert addresses == [serving + "/dicomweb"]
