"""The gateway under gunicorn behind AUTH_MODE=required with a real identity provider
(panva's oidc-provider 8.8.1): client-credentials tokens of the patient-a/-b, clinician
and backend clients, an opaque token introspected (RFC 7662), patient A kept out of
patient B by every face, and no token in any log line of the gateway."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.archive.local import open_local
from gateway.archive.protocol import Level, Query
from gateway.config import Settings
from tests.support.oidc_idp import DEFAULT_AUDIENCE, start_oidc
from tests.support.procs import start_gateway


@pytest.fixture(scope="module")
def cohort(loaded_data_dir: Path) -> dict[str, dict]:
    archive = open_local(Settings().replace(data_dir=loaded_data_dir))
    try:
        out: dict[str, dict] = {}
        for match in archive.search(Query(Level.STUDY)).matches:
            pid = match["00100020"]["Value"][0]
            out.setdefault(pid, {"id": pid, "study": match["0020000D"]["Value"][0]})
        return dict(sorted(out.items()))
    finally:
        archive.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path,
          cohort: dict) -> Iterator[tuple]:
    a, b = list(cohort.values())[:2]
    idp = start_oidc(artifacts_dir / "logs", patient_a=a["id"], patient_b=b["id"])
    data = tmp_path_factory.mktemp("oidc-gw") / "data"
    shutil.copytree(loaded_data_dir, data)
    server = start_gateway(data, artifacts_dir / "logs", env={
        "GATEWAY_AUTH_MODE": "required", "GATEWAY_AUTH_ISSUER": idp.issuer,
        "GATEWAY_AUTH_AUDIENCE": DEFAULT_AUDIENCE, "GATEWAY_CORS_ORIGINS": "https://v.test",
        "GATEWAY_AUTH_CLIENT_ID": "gateway", "GATEWAY_AUTH_CLIENT_SECRET": "gateway-secret",
        "GATEWAY_LOG_LEVEL": "INFO"})
    try:
        yield server, idp, a, b
    finally:
        server.stop()
        idp.close()


def _get(server, path: str, token: str | None = None, **headers: str) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(server.url + path, headers=headers, timeout=30)


def test_patient_tokens_see_their_compartment_only(stack) -> None:
    server, idp, a, b = stack
    token = idp.token("patient-a", "patient/*.rs")
    studies = _get(server, "/dicomweb/studies", token).json()
    assert {s["00100020"]["Value"][0] for s in studies} == {a["id"]}
    assert _get(server, f"/dicomweb/studies/{b['study']}/metadata", token).status_code == 404
    assert _get(server, f"/dicomweb/studies/{a['study']}/metadata", token).status_code == 200
    assert _get(server, f"/fhir/Patient/{b['id']}", token).status_code == 404
    assert _get(server, f"/fhir/Patient/{a['id']}", token).status_code == 200
    bundle = _get(server, "/fhir/Patient", token).json()
    assert bundle["total"] == 1 and bundle["entry"][0]["resource"]["id"] == a["id"]
    other = idp.token("patient-b", "patient/*.rs")
    assert _get(server, f"/fhir/Patient/{b['id']}", other).status_code == 200


def test_user_and_system_tokens_see_everyone(stack, cohort) -> None:
    server, idp, _, _ = stack
    for client, scope in (("clinician", "user/*.rs"), ("backend", "system/*.rs")):
        studies = _get(server, "/dicomweb/studies", idp.token(client, scope)).json()
        assert {s["00100020"]["Value"][0] for s in studies} == set(cohort), client


def test_an_opaque_token_is_introspected(stack) -> None:
    server, idp, a, _ = stack
    token = idp.token("patient-a", "patient/*.rs", opaque=True)
    assert token.count(".") != 2
    assert _get(server, f"/fhir/Patient/{a['id']}", token).status_code == 200


def test_no_token_and_a_scope_too_narrow(stack) -> None:
    server, idp, a, _ = stack
    none = _get(server, "/dicomweb/studies")
    assert none.status_code == 401 and none.headers["WWW-Authenticate"] == \
        'Bearer realm="tcia-gateway"'
    narrow = _get(server, "/dicomweb/studies", idp.token("patient-a", "patient/Observation.rs"))
    assert narrow.status_code == 403
    assert 'scope="patient/ImagingStudy.s"' in narrow.headers["WWW-Authenticate"]
    smart = _get(server, "/fhir/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == idp.endpoint("token_endpoint")


def test_no_token_in_any_log_line(stack) -> None:
    server, idp, a, _ = stack
    token = idp.token("patient-a", "patient/*.rs")
    _get(server, "/dicomweb/studies", token)
    _get(server, f"/fhir/Patient?_id={a['id']}", token)
    refused = _get(server, f"/fhir/Patient?access_token={token}")
    assert refused.status_code == 400
    _get(server, f"/fhir/Patient?access%5Ftoken={token}")
    log = server.proc.log.read_text()
    assert "/fhir/Patient?access_token=[redacted]" in log
    for part in token.split("."):
        assert part[-24:] not in log
