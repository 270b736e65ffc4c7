"""The HTTP security suite: every face (QIDO, WADO-RS metadata/instances/frames/rendered/
thumbnail/bulkdata, WADO-URI, STOW, FHIR read/search/_include/_revinclude/$everything/paging)
against every way a token can be missing, malformed or wrong, and patient A reaching for
patient B. The gateway is the real app on the 6-patient cohort with AUTH_MODE=required,
its issuer the forged loopback issuer (real discovery + JWKS over HTTP, tests/support).

Each case asserts the status, the RFC 6750 challenge, the body in the face's own form
(FHIR OperationOutcome with its issue code; DICOMweb JSON with the reason), and that
nothing was served or stored.
"""
from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from gateway import close_app, create_app
from gateway.archive.local import open_local
from gateway.archive.protocol import Level, Query
from gateway.config import Settings
from gateway.dicomweb import multipart
from tests.support.dicomfiles import make_file
from tests.support.forged_issuer import ForgedIssuer
from tests.support.oidc_idp import DEFAULT_AUDIENCE
from tests.support.tokens import SigningKey

READ_ALL = "patient/*.rs"
SYSTEM = "system/*.cruds"
BOUNDARY = "b0undary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


@dataclass
class World:
    client: object
    app: object
    issuer: ForgedIssuer
    a: dict  # patient A: id, study, series, instance
    b: dict
    data: Path

    def token(self, scope: str = READ_ALL, patient: str | None = "A", **claims: object) -> str:
        pid = {"A": self.a["id"], "B": self.b["id"]}.get(patient or "", patient)
        return self.issuer.forge.token(scope, patient=pid, **claims)

    def get(self, path: str, token: str | None = None, **headers: str):
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get(path, headers=headers)  # type: ignore[attr-defined]


def _first_study(archive, patient: str) -> dict:
    studies = archive.search(Query(Level.STUDY, {"PatientID": patient})).matches
    study = studies[0]["0020000D"]["Value"][0]
    instances = archive.search(Query(Level.INSTANCE, {"StudyInstanceUID": study})).matches
    first = instances[0]
    return {"id": patient, "study": study, "series": first["0020000E"]["Value"][0],
            "instance": first["00080018"]["Value"][0]}


@pytest.fixture(scope="module")
def world(tmp_path_factory, loaded_data_dir: Path) -> Iterator[World]:
    data = tmp_path_factory.mktemp("secure") / "data"
    shutil.copytree(loaded_data_dir, data)
    base = open_local(Settings().replace(data_dir=data))
    try:
        patients = sorted({m["00100020"]["Value"][0]
                           for m in base.search(Query(Level.STUDY)).matches})
        a, b = _first_study(base, patients[0]), _first_study(base, patients[1])
    finally:
        base.close()
    with ForgedIssuer(DEFAULT_AUDIENCE) as issuer:
        settings = Settings().replace(
            data_dir=data, auth_mode="required", auth_issuer=issuer.url,
            auth_audience=DEFAULT_AUDIENCE, cors_origins="https://viewer.test")
        app = create_app(settings)
        try:
            yield World(app.test_client(), app, issuer, a, b, data)
        finally:
            close_app(app)


# ----------------------------------------------------------------- the faces
def _paths(w: World, who: dict) -> dict[str, str]:
    st, se, sop = who["study"], who["series"], who["instance"]
    inst = f"/dicomweb/studies/{st}/series/{se}/instances/{sop}"
    return {
        "qido": f"/dicomweb/studies?PatientID={who['id']}",
        "qido-series": f"/dicomweb/studies/{st}/series",
        "wado-metadata": f"/dicomweb/studies/{st}/series/{se}/metadata",
        "wado-instance": inst,
        "wado-frames": inst + "/frames/1",
        "wado-rendered": inst + "/rendered",
        "wado-thumbnail": inst + "/thumbnail",
        "wado-bulkdata": inst + "/bulk/7FE00010",
        "wado-uri": f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}"
                    "&contentType=application/dicom",
        "fhir-read": f"/fhir/Patient/{who['id']}",
        "fhir-search": f"/fhir/Observation?patient={who['id']}",
        "fhir-include": f"/fhir/Observation?patient={who['id']}&_include=Observation:patient",
        "fhir-revinclude": f"/fhir/Patient?_id={who['id']}&_revinclude=Observation:patient",
        "fhir-everything": f"/fhir/Patient/{who['id']}/$everything",
        "fhir-paging": "/fhir/Observation?_count=1&_offset=1",
    }


FACES = ["qido", "qido-series", "wado-metadata", "wado-instance", "wado-frames",
         "wado-rendered", "wado-thumbnail", "wado-bulkdata", "wado-uri", "fhir-read",
         "fhir-search", "fhir-include", "fhir-revinclude", "fhir-everything", "fhir-paging"]
ACCEPT = {"wado-instance": 'multipart/related; type="application/dicom"',
          "wado-frames": 'multipart/related; type="application/octet-stream"',
          "wado-bulkdata": 'multipart/related; type="application/octet-stream"',
          "wado-rendered": "image/jpeg", "wado-thumbnail": "image/jpeg"}


def _request(w: World, face: str, token: str | None = None, who: dict | None = None,
             query: str = "", **headers: str):
    path = _paths(w, who or w.a)[face] + query
    if face in ACCEPT:
        headers.setdefault("Accept", ACCEPT[face])
    return w.get(path, token, **headers)


def _stow(w: World, tmp_path: Path, patient: str, token: str | None, name: str = "x"):
    body = multipart.encode([("application/dicom", make_file(
        tmp_path / f"{name}.dcm", patient=patient, study=f"st-{name}", series=f"se-{name}",
        sop=f"sop-{name}").read_bytes())], BOUNDARY)
    headers = {"Content-Type": STOW_TYPE, "Accept": "application/dicom+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return w.client.post("/dicomweb/studies", data=body, headers=headers)  # type: ignore[attr-defined]


def _refusal(response, status: int, error: str | None, fhir_code: str) -> dict:
    """The RFC 6750 answer in the face's form; returns the body."""
    assert response.status_code == status, response.data[:300]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="tcia-gateway"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
    assert response.headers["Cache-Control"] == "no-store"
    body = orjson.loads(response.data)
    if response.headers["Content-Type"].startswith("application/fhir+json"):
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == fhir_code
    else:
        assert response.headers["Content-Type"].startswith("application/json")
        assert body["status"] == status and body["error_description"] and body["message"]
        assert body["error"] == (error or "unauthorized")
    return body


# --------------------------------------------------------- broken credentials
BAD_TOKENS = {
    # name: (make headers/query from the world, status, error, FHIR issue code)
    "no-token": (lambda w: ({}, ""), 401, None, "login"),
    "other-scheme": (lambda w: ({"Authorization": "Basic dXNlcjpwdw=="}, ""), 401, None, "login"),
    "malformed-header": (lambda w: ({"Authorization": "Bearer a b c"}, ""), 400,
                         "invalid_request", "login"),
    "bearer-without-token": (lambda w: ({"Authorization": "Bearer"}, ""), 400,
                             "invalid_request", "login"),
    "two-transports": (lambda w: ({"Authorization": f"Bearer {w.token()}"},
                                  f"access_token={w.token()}"), 400, "invalid_request", "login"),
    "token-in-query": (lambda w: ({}, f"access_token={w.token()}"), 400, "invalid_request",
                       "login"),
    "expired": (lambda w: _bearer(w.issuer.forge.expired(READ_ALL, patient=w.a["id"])), 401,
                "invalid_token", "expired"),
    "future-nbf": (lambda w: _bearer(w.issuer.forge.not_yet_valid(READ_ALL, patient=w.a["id"])),
                   401, "invalid_token", "login"),
    "wrong-issuer": (lambda w: _bearer(w.issuer.forge.wrong_issuer(READ_ALL, patient=w.a["id"])),
                     401, "invalid_token", "login"),
    "wrong-audience": (lambda w: _bearer(w.issuer.forge.wrong_audience(READ_ALL,
                                                                        patient=w.a["id"])),
                       401, "invalid_token", "login"),
    "typ-jwt-id-token": (lambda w: _bearer(w.issuer.forge.id_token(READ_ALL, patient=w.a["id"])),
                         401, "invalid_token", "login"),
    "alg-none": (lambda w: _bearer(w.issuer.forge.alg_none(READ_ALL, patient=w.a["id"])), 401,
                 "invalid_token", "login"),
    "hs256-public-key": (lambda w: _bearer(w.issuer.forge.hs256_with_public_key(
        READ_ALL, patient=w.a["id"])), 401, "invalid_token", "login"),
    "tampered": (lambda w: _bearer(w.issuer.forge.tampered(READ_ALL)), 401, "invalid_token",
                 "login"),
    "unknown-kid": (lambda w: _bearer(w.issuer.forge.unknown_kid(READ_ALL, patient=w.a["id"])),
                    401, "invalid_token", "login"),
    "jku-header": (lambda w: _bearer(w.issuer.forge.with_jku(w.issuer.jku_url, READ_ALL,
                                                             patient=w.a["id"])),
                   401, "invalid_token", "login"),
    "embedded-jwk": (lambda w: _bearer(w.issuer.forge.with_jwk(READ_ALL, patient=w.a["id"])),
                     401, "invalid_token", "login"),
}


def _bearer(token: str) -> tuple[dict, str]:
    return {"Authorization": f"Bearer {token}"}, ""


@pytest.mark.parametrize("case", list(BAD_TOKENS))
@pytest.mark.parametrize("face", FACES)
def test_bad_credentials_are_refused_on_every_face(world: World, face: str, case: str) -> None:
    make, status, error, code = BAD_TOKENS[case]
    headers, query = make(world)
    path = _paths(world, world.a)[face]
    if query:
        path += ("&" if "?" in path else "?") + query
    if face in ACCEPT:
        headers.setdefault("Accept", ACCEPT[face])
    response = world.client.get(path, headers=headers)  # type: ignore[attr-defined]
    body = _refusal(response, status, error, code)
    assert world.a["study"] not in response.get_data(as_text=True) or face == "qido-series"
    assert "entry" not in body


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_credentials_on_stow_store_nothing(world: World, tmp_path: Path, case: str) -> None:
    make, status, error, code = BAD_TOKENS[case]
    headers, query = make(world)
    body = multipart.encode([("application/dicom", make_file(
        tmp_path / "x.dcm", patient=world.a["id"], study=f"st-{case}", sop=f"sop-{case}"
    ).read_bytes())], BOUNDARY)
    response = world.client.post(  # type: ignore[attr-defined]
        "/dicomweb/studies" + (f"?{query}" if query else ""), data=body,
        headers={"Content-Type": STOW_TYPE, **headers})
    _refusal(response, status, error, code)
    assert not _stored(world, make_file(tmp_path / "y.dcm", patient=world.a["id"],
                                        study=f"st-{case}", sop=f"sop-{case}"))


def _stored(w: World, path: Path) -> bool:
    import pydicom
    sop = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
    archive = open_local(Settings().replace(data_dir=w.data))
    try:
        return bool(archive.search(Query(Level.INSTANCE, {"SOPInstanceUID": sop})).matches)
    finally:
        archive.close()


# ----------------------------------------------------------------- scopes
@pytest.mark.parametrize("face", FACES)
def test_a_valid_token_with_the_scope_is_served(world: World, face: str) -> None:
    response = _request(world, face, world.token(READ_ALL))
    assert response.status_code == 200, (face, response.data[:300])
    assert response.headers["Cache-Control"].startswith("private")
    assert "Authorization" in response.headers.get("Vary", "")


@pytest.mark.parametrize("face", FACES)
def test_v1_scopes_read_as_rs(world: World, face: str) -> None:
    assert _request(world, face, world.token("patient/*.read")).status_code == 200


@pytest.mark.parametrize("face, scope, needed", [
    ("qido", "patient/Observation.rs", "patient/ImagingStudy.s"),
    ("wado-metadata", "patient/ImagingStudy.s", "patient/ImagingStudy.r"),
    ("wado-frames", "patient/ImagingStudy.s", "patient/ImagingStudy.r"),
    ("wado-uri", "patient/Patient.r", "patient/ImagingStudy.r"),
    ("fhir-read", "patient/Observation.rs", "patient/Patient.r"),
    ("fhir-search", "patient/Observation.r", "patient/Observation.s"),
    ("fhir-everything", "patient/Observation.rs", "patient/Patient.r"),
    ("qido-series", "patient/Observation.rs", "patient/ImagingStudy.s"),
    ("wado-instance", "patient/ImagingStudy.s", "patient/ImagingStudy.r"),
    ("wado-rendered", "patient/ImagingStudy.s", "patient/ImagingStudy.r"),
    ("wado-thumbnail", "patient/ImagingStudy.s", "patient/ImagingStudy.r"),
    ("wado-bulkdata", "patient/ImagingStudy.s", "patient/ImagingStudy.r"),
    ("fhir-include", "patient/Patient.rs", "patient/Observation.s"),
    ("fhir-revinclude", "patient/Observation.rs", "patient/Patient.s"),
    ("fhir-paging", "patient/Patient.rs", "patient/Observation.s"),
])
def test_a_missing_scope_is_403_naming_the_scope(world: World, face: str, scope: str,
                                                 needed: str) -> None:
    response = _request(world, face, world.token(scope))
    _refusal(response, 403, "insufficient_scope", "forbidden")
    assert f'scope="{needed}"' in response.headers["WWW-Authenticate"]


def test_stow_needs_the_create_scope(world: World, tmp_path: Path) -> None:
    response = _stow(world, tmp_path, world.a["id"], world.token("patient/*.read"), "v1")
    _refusal(response, 403, "insufficient_scope", "forbidden")
    assert 'scope="patient/ImagingStudy.c"' in response.headers["WWW-Authenticate"]
    assert not _stored(world, tmp_path / "v1.dcm")


def test_granular_category_scope_narrows_observations(world: World) -> None:
    token = world.token("patient/Observation.rs?category=laboratory patient/Patient.r")
    bundle = orjson.loads(world.get("/fhir/Observation?_count=1000", token).data)
    found = [e["resource"] for e in bundle.get("entry", [])]
    assert bundle["total"] == len(found)
    assert all(any(c.get("code") == "laboratory" for cat in o.get("category", []) for c in cat["coding"])
               for o in found)
    every = orjson.loads(world.get("/fhir/Observation?_count=1000", world.token()).data)
    others = [e["resource"]["id"] for e in every["entry"]
              if not any(c.get("code") == "laboratory" for cat in e["resource"].get("category", [])
                         for c in cat["coding"])]
    assert others and bundle["total"] < every["total"]
    unknown = world.get("/fhir/Observation/no-such-id", token)
    hidden = world.get(f"/fhir/Observation/{others[0]}", token)
    assert hidden.status_code == unknown.status_code == 404
    assert _same(hidden, unknown, others[0], "no-such-id")


# ------------------------------------------------------- patient compartments
def _same(response, reference, mine: str, theirs: str) -> bool:
    """Two answers equal once the id each asked for is put in the same place."""
    return (response.status_code == reference.status_code
            and response.get_data(as_text=True).replace(mine, "ID")
            == reference.get_data(as_text=True).replace(theirs, "ID"))


UNKNOWN = {"id": "no-such-patient", "study": "1.2.3.999", "series": "1.2.3.999.1",
           "instance": "1.2.3.999.1.1"}
BY_UID = ["wado-metadata", "wado-instance", "wado-frames", "wado-rendered", "wado-thumbnail",
          "wado-bulkdata", "wado-uri", "qido-series", "fhir-read", "fhir-everything"]


@pytest.mark.parametrize("face", BY_UID)
def test_patient_a_reaching_patient_b_gets_the_unknown_answer(world: World, face: str) -> None:
    token = world.token(READ_ALL, patient="A")
    theirs = _request(world, face, token, who=world.b)
    unknown = _request(world, face, token, who={**UNKNOWN})
    assert theirs.status_code in (404, 200)
    body = theirs.get_data(as_text=True)
    for key in ("study", "series", "instance", "id"):
        body = body.replace(world.b[key], UNKNOWN[key])
    assert (theirs.status_code, body) == (unknown.status_code, unknown.get_data(as_text=True))
    assert _request(world, face, world.token(READ_ALL, patient="B"), who=world.b).status_code == 200


@pytest.mark.parametrize("face", ["qido", "fhir-search", "fhir-include", "fhir-revinclude"])
def test_a_search_for_patient_b_is_empty(world: World, face: str) -> None:
    response = _request(world, face, world.token(READ_ALL, patient="A"), who=world.b)
    assert response.status_code == 200
    body = orjson.loads(response.data)
    if face == "qido":
        assert body == []
    else:
        assert body["total"] == 0 and "entry" not in body


def test_searches_without_a_patient_are_narrowed_with_their_totals(world: World) -> None:
    mine = world.token(READ_ALL, patient="A")
    everyone = world.token("user/*.rs", patient=None)
    studies = orjson.loads(world.get("/dicomweb/studies", mine).data)
    assert studies and {s["00100020"]["Value"][0] for s in studies} == {world.a["id"]}
    for kind in ("Observation", "Condition", "ImagingStudy", "Patient"):
        narrowed = orjson.loads(world.get(f"/fhir/{kind}?_count=1", mine).data)
        expected = orjson.loads(world.get(f"/fhir/{kind}?_count=1&{_subject(kind)}="
                                          f"{world.a['id']}", everyone).data)
        wide = orjson.loads(world.get(f"/fhir/{kind}?_count=1", everyone).data)
        assert narrowed["total"] == expected["total"] < wide["total"], kind
        nxt = [link["url"] for link in narrowed["link"] if link["relation"] == "next"]
        if expected["total"] > 1:
            page = orjson.loads(world.get(nxt[0].split("/fhir", 1)[1].join(["/fhir", ""]),
                                          mine).data)
            assert page["total"] == expected["total"]
            assert all(_owner(e["resource"]) == world.a["id"] for e in page["entry"])


def _subject(kind: str) -> str:
    return "_id" if kind == "Patient" else "patient"


def _owner(resource: dict) -> str:
    if resource["resourceType"] == "Patient":
        return resource["id"]
    ref = (resource.get("subject") or resource.get("individual") or {}).get("reference", "")
    return ref.removeprefix("Patient/")  # individual: ResearchSubject


def test_revinclude_and_everything_stay_in_the_compartment(world: World) -> None:
    mine = world.token(READ_ALL, patient="A")
    for path in ("/fhir/Patient?_revinclude=Observation:patient&_count=100",
                 f"/fhir/Patient/{world.a['id']}/$everything",
                 "/fhir/ImagingStudy?_include=ImagingStudy:patient"):
        bundle = orjson.loads(world.get(path, mine).data)
        owners = {_owner(e["resource"]) for e in bundle["entry"]
                  if e["resource"]["resourceType"] not in ("Endpoint",)}
        assert owners == {world.a["id"]}, path


def test_stow_into_another_patient_is_refused_and_stores_nothing(world: World,
                                                                 tmp_path: Path) -> None:
    token = world.token("patient/ImagingStudy.c patient/ImagingStudy.rs", patient="A")
    response = _stow(world, tmp_path, world.b["id"], token, "intob")
    assert response.status_code == 409, response.data[:300]
    failed = orjson.loads(response.data)["00081198"]["Value"]
    assert [f["00081197"]["Value"][0] for f in failed] == [0x0124]  # Refused: Not Authorized
    assert not _stored(world, tmp_path / "intob.dcm")
    ok = _stow(world, tmp_path, world.a["id"], token, "intoa")
    assert ok.status_code == 200, ok.data[:300]
    assert _stored(world, tmp_path / "intoa.dcm")


# ----------------------------------------------------------- key rotation
@pytest.mark.parametrize("face", FACES)
def test_key_rotation_new_key_without_restart_removed_key_refused(world: World,
                                                                  face: str) -> None:
    jwks = world.app.extensions["tcia_gateway"]["policy"].validator.jwks  # type: ignore[attr-defined]
    jwks.min_refresh_interval, jwks.max_age = 0.2, 0.5  # this app's cache, not a global
    old_key = world.issuer.forge.key
    old = world.token()
    assert world.get("/fhir/metadata", old).status_code == 200
    new_key = SigningKey.generate()
    time.sleep(0.3)  # past the refresh interval: an unknown kid may refetch the JWKS
    assert _request(world, face, old).status_code == 200  # decided once: reused (memo.py)
    world.issuer.publish([old_key, new_key], signer=new_key)
    time.sleep(0.25)  # that request may have refreshed: one refetch per interval
    try:
        assert _request(world, face, world.token()).status_code == 200
        world.issuer.publish([new_key])
        time.sleep(0.7)
        _refusal(_request(world, face, old), 401, "invalid_token", "login")
        assert _request(world, face, world.token()).status_code == 200
    finally:
        world.issuer.publish([old_key, new_key], signer=old_key)


def test_a_reused_decision_ends_with_its_token(world: World) -> None:
    """The guard reuses a decision about a token (guard/memo.py) only until the token's
    exp: then the token goes the whole way again, and a refusal is never reused."""
    memo = world.app.extensions["tcia_gateway"]["decisions"]
    time.sleep(0.3)  # a key rotation test before may have just refreshed this app's JWKS
    now = int(time.time())
    short = world.token(exp=now + 2)
    assert _request(world, "qido", short).status_code == 200
    key = next(k for k, d in memo._items.items() if d.principal.expires_at == now + 2)
    assert memo.get(key) is not None  # reused while valid
    time.sleep(max(0.0, now + 2.1 - time.time()))
    assert memo.get(key) is None  # gone at exp (AUTH_LEEWAY still lets the validator accept it)
    before = len(memo)
    bad = world.issuer.forge.expired("user/*.rs")
    _refusal(_request(world, "qido", bad), 401, "invalid_token", "expired")
    assert len(memo) == before  # refusals are not kept


# -------------------------------------------------------------- public routes
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/fhir/metadata",
                                  "/fhir/.well-known/smart-configuration"])
def test_public_routes_need_no_token(world: World, path: str) -> None:
    assert world.get(path).status_code == 200


def test_smart_configuration_and_capability_security(world: World) -> None:
    doc = orjson.loads(world.get("/fhir/.well-known/smart-configuration").data)
    assert doc["issuer"] == world.issuer.url
    assert doc["authorization_endpoint"] == world.issuer.url + "/auth"
    assert doc["token_endpoint"] == world.issuer.url + "/token"
    assert {"permission-v2", "permission-v1", "permission-patient"} <= set(doc["capabilities"])
    assert "S256" in doc["code_challenge_methods_supported"]
    cap = orjson.loads(world.get("/fhir/metadata").data)
    security = cap["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris == {"authorize": world.issuer.url + "/auth", "token": world.issuer.url + "/token"}
    from gateway.clinical import resources
    resources.validate(cap)


def test_tokens_never_reach_the_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    token = world.token()
    world.get("/dicomweb/studies", token)
    world.get("/fhir/Patient", token)
    world.get("/fhir/Patient?access_token=" + token)
    world.get("/fhir/Patient", world.issuer.forge.expired(READ_ALL))
    signature = token.split(".")[2]
    assert not re.search(re.escape(signature[:20]), caplog.text)


def test_cors_preflight_needs_no_token(world: World) -> None:
    response = world.client.options(  # type: ignore[attr-defined]
        "/dicomweb/studies", headers={"Origin": "https://viewer.test",
                                      "Access-Control-Request-Method": "GET",
                                      "Access-Control-Request-Headers": "authorization"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://viewer.test"
    assert b"[" not in response.data  # no data with the preflight


def test_stow_under_the_overwrite_policy_also_needs_u(tmp_path: Path, loaded_data_dir: Path,
                                                      forged_issuer: ForgedIssuer) -> None:
    data = tmp_path / "data"
    shutil.copytree(loaded_data_dir, data)
    app = create_app(Settings().replace(
        data_dir=data, auth_mode="required", auth_issuer=forged_issuer.url,
        auth_audience=DEFAULT_AUDIENCE, cors_origins="https://viewer.test",
        duplicate_policy="overwrite"))
    try:
        w = World(app.test_client(), app, forged_issuer, {"id": "P-U"}, {}, data)
        refused = _stow(w, tmp_path, "P-U", forged_issuer.forge.token("system/ImagingStudy.c"), "u1")
        _refusal(refused, 403, "insufficient_scope", "forbidden")
        assert 'scope="system/ImagingStudy.cu"' in refused.headers["WWW-Authenticate"]
        assert not _stored(w, tmp_path / "u1.dcm")
        ok = _stow(w, tmp_path, "P-U", forged_issuer.forge.token("system/ImagingStudy.cu"), "u2")
        assert ok.status_code == 200 and _stored(w, tmp_path / "u2.dcm")
    finally:
        close_app(app)


# ----------------------------------------------------------------- whole-archive operations
WHOLE = [("post", "/cohorts", {"qido": "studies?ModalitiesInStudy=CT"}),
         ("get", "/fhir/$export", None), ("get", "/fhir/Patient/$export", None),
         ("get", "/cohorts/facets", None)]


@pytest.mark.parametrize("method, path, body", WHOLE, ids=[w[1] for w in WHOLE])
def test_whole_archive_operations_refuse_a_patient_compartment(world: World, method: str,
                                                               path: str, body) -> None:
    """Cohorts, facet counts and Bulk Data exports read the archive outside the request's
    scope (jobs, frozen lists): a patient/ token would get other patients' data, so it is
    refused with insufficient_scope; an unrestricted token is served."""
    headers = {"Authorization": f"Bearer {world.token('patient/*.cruds')}",
               "Prefer": "respond-async"}
    send = getattr(world.client, method)
    refused = send(path, json=body, headers=headers)
    assert refused.status_code == 403, refused.get_data(as_text=True)[:300]
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert "system/" in refused.headers["WWW-Authenticate"]
    headers["Authorization"] = f"Bearer {world.token(SYSTEM, patient=None)}"
    served = send(path, json=body, headers=headers)
    assert served.status_code in (200, 201, 202), served.get_data(as_text=True)[:300]


def test_endpoint_and_smart_configuration_say_imaging_needs_the_token(world: World) -> None:
    """SMART Imaging Access: the DICOMweb Endpoint says retrievals take the same token
    (requires-access-token), and smart-configuration lists smart-imaging-access."""
    from fhir.resources.R4B.endpoint import Endpoint
    token = world.token(READ_ALL, patient="A")
    bundle = orjson.loads(world.get("/fhir/Endpoint", token).data)
    (endpoint,) = [e["resource"] for e in bundle["entry"]]
    Endpoint.model_validate(endpoint)
    assert endpoint["meta"]["profile"] == [
        "http://fhir.org/argonaut/smart-imaging/StructureDefinition/smart-wado-endpoint"]
    assert endpoint["extension"] == [{
        "url": "http://fhir.org/argonaut/smart-imaging/StructureDefinition/requires-access-token",
        "valueBoolean": True}]
    config = orjson.loads(world.get("/fhir/.well-known/smart-configuration").data)
    assert "smart-imaging-access" in config["capabilities"]
