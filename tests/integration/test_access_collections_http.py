"""Restricted collections over HTTP (AUTH_RESTRICTED_COLLECTIONS, public-read): a study of a
limited-access collection is invisible to anonymous callers and to tokens without the
collections claim, on QIDO, WADO and FHIR ImagingStudy alike, and its UID answers like an
unknown one; a token whose `collections` claim names it sees it."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from gateway import close_app, create_app
from gateway.config import Settings
from tests.support.forged_issuer import ForgedIssuer
from tests.support.oidc_idp import DEFAULT_AUDIENCE


@pytest.fixture(scope="module")
def gw(tmp_path_factory, loaded_data_dir: Path) -> Iterator[tuple]:
    data = tmp_path_factory.mktemp("restricted") / "data"
    shutil.copytree(loaded_data_dir, data)
    engine = sa.create_engine(f"sqlite:///{data / 'index.sqlite'}")
    with engine.begin() as conn:  # what `import --collection SECRET` gives one study
        secret = conn.execute(sa.text("SELECT study_uid FROM studies ORDER BY pk LIMIT 1")).scalar()
        conn.execute(sa.text("UPDATE studies SET collection = 'SECRET' WHERE study_uid = :u"),
                     {"u": secret})
    engine.dispose()
    with ForgedIssuer(DEFAULT_AUDIENCE) as issuer:
        app = create_app(Settings().replace(
            data_dir=data, auth_mode="public-read", auth_issuer=issuer.url,
            auth_audience=DEFAULT_AUDIENCE, cors_origins="https://viewer.test",
            auth_restricted_collections="SECRET"))
        try:
            yield app.test_client(), issuer, secret
        finally:
            close_app(app)


def _uids(client, headers: dict) -> tuple[set, set]:
    qido = orjson.loads(client.get("/dicomweb/studies", headers=headers).data)
    fhir = orjson.loads(client.get("/fhir/ImagingStudy?_count=1000", headers=headers).data)
    return ({s["0020000D"]["Value"][0] for s in qido},
            {i["value"].removeprefix("urn:oid:") for e in fhir.get("entry", [])
             for i in e["resource"].get("identifier", [])})


def test_restricted_collection_is_hidden_without_the_claim(gw) -> None:
    client, issuer, secret = gw
    plain = {"Authorization": f"Bearer {issuer.forge.token('user/*.rs')}"}
    granted = {"Authorization": "Bearer " + issuer.forge.token("user/*.rs",
                                                               collections=["SECRET"])}
    for headers in ({}, plain):
        qido, fhir = _uids(client, headers)
        assert secret not in qido and secret not in fhir and qido
        hidden = client.get(f"/dicomweb/studies/{secret}/metadata", headers=headers)
        unknown = client.get("/dicomweb/studies/1.2.3.4.5/metadata", headers=headers)
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.data.replace(secret.encode(), b"X") == unknown.data.replace(b"1.2.3.4.5", b"X")
    qido, fhir = _uids(client, granted)
    assert secret in qido and secret in fhir
    assert client.get(f"/dicomweb/studies/{secret}/metadata", headers=granted).status_code == 200


def test_the_collection_listing_and_viewer_config_leave_restricted_ones_out(gw) -> None:
    client, issuer, _secret = gw
    granted = {"Authorization": "Bearer " + issuer.forge.token("user/*.rs",
                                                               collections=["SECRET"])}
    anonymous = [c["name"] for c in orjson.loads(client.get("/collections").data)]
    assert "SECRET" not in anonymous
    assert "SECRET" in [c["name"] for c in orjson.loads(client.get("/collections",
                                                                   headers=granted).data)]
    assert client.get("/collections/SECRET/dicomweb/studies", headers=granted).status_code == 200


def test_a_restricted_collection_root_answers_like_an_unknown_one(gw) -> None:
    client, issuer, _secret = gw
    plain = {"Authorization": f"Bearer {issuer.forge.token('user/*.rs')}"}
    for headers in ({}, plain):
        hidden = client.get("/collections/SECRET/dicomweb/studies", headers=headers)
        unknown = client.get("/collections/NO-SUCH/dicomweb/studies", headers=headers)
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.data.replace(b"SECRET", b"X") == unknown.data.replace(b"NO-SUCH", b"X")
