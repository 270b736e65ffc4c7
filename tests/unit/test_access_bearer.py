"""RFC 6750 2 bearer extraction and the RFC 6750 3 answers of each access error."""
from __future__ import annotations

import pytest

from gateway.access.answers import dicomweb_answer, fhir_answer
from gateway.access.bearer import bearer_token
from gateway.access.errors import (
    ExpiredToken,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    IssuerUnavailable,
    MissingCredentials,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_~+/=="


def test_the_header_gives_the_token() -> None:
    assert bearer_token(f"Bearer {TOKEN}") == TOKEN
    assert bearer_token(f"bearer   {TOKEN}  ") == TOKEN  # scheme case-insensitive (RFC 7235)
    assert bearer_token([f"BEARER {TOKEN}"]) == TOKEN


def test_no_credentials_or_another_scheme_is_none() -> None:
    assert bearer_token(None) is None
    assert bearer_token([]) is None
    assert bearer_token("Basic dXNlcjpwYXNz") is None  # RFC 6750 3.1: a plain challenge


@pytest.mark.parametrize("header, reason", [
    ("Bearer", "without a token"),
    ("Bearer    ", "without a token"),
    ("Bearer a b", "malformed Bearer token"),
    ("Bearer tok=en", "malformed Bearer token"),
    ('Bearer "quoted"', "malformed Bearer token"),
    ("Bearer tök", "malformed Bearer token"),
    ("", "malformed Authorization header"),
    ("(bad) x", "malformed Authorization header"),
])
def test_malformed_headers_are_invalid_request(header: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason) as info:
        bearer_token(header)
    assert info.value.status == 400
    assert info.value.www_authenticate().startswith(
        'Bearer realm="tcia-gateway", error="invalid_request", error_description=')


def test_query_and_body_transports_are_refused_even_alone() -> None:
    with pytest.raises(InvalidRequest, match="query string"):
        bearer_token(None, query={"access_token": TOKEN})
    with pytest.raises(InvalidRequest, match="request body"):
        bearer_token(None, form=["access_token"])


def test_two_transports_or_two_headers_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="query string"):
        bearer_token(f"Bearer {TOKEN}", query={"access_token": TOKEN, "limit": "1"})
    with pytest.raises(InvalidRequest, match="more than one"):
        bearer_token([f"Bearer {TOKEN}", f"Bearer {TOKEN}"])
    assert bearer_token(f"Bearer {TOKEN}", query={"limit": "1"}) == TOKEN


def test_challenges_per_rfc6750_3() -> None:
    assert MissingCredentials().www_authenticate() == 'Bearer realm="tcia-gateway"'
    assert (InvalidToken("bad signature").www_authenticate() ==
            'Bearer realm="tcia-gateway", error="invalid_token", error_description="bad signature"')
    scope = InsufficientScope("no", scope="patient/ImagingStudy.s").www_authenticate()
    assert scope == ('Bearer realm="tcia-gateway", error="insufficient_scope", '
                     'error_description="no", scope="patient/ImagingStudy.s"')
    assert IssuerUnavailable().www_authenticate() is None


def test_descriptions_cannot_break_the_header() -> None:
    challenge = InvalidToken('kid "x"\\\r\nSet-Cookie: a=b').www_authenticate()
    assert "\r" not in challenge and "\n" not in challenge and "\\" not in challenge
    assert challenge.count('"') == 6  # realm, error, error_description: quoted once each
    assert 'error_description="kid \'x\'' in challenge


def test_protocol_answers() -> None:
    expired = fhir_answer(ExpiredToken())
    assert expired.status == 401 and expired.body["issue"][0]["code"] == "expired"
    assert expired.headers["WWW-Authenticate"].startswith('Bearer realm="tcia-gateway", error="invalid_token"')
    assert expired.headers["Cache-Control"] == "no-store"
    login = fhir_answer(MissingCredentials())
    assert login.body == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": "an access token is required"}]}
    forbidden = fhir_answer(InsufficientScope("no", scope="user/Observation.rs"))
    assert forbidden.status == 403 and forbidden.body["issue"][0]["code"] == "forbidden"
    assert forbidden.body["issue"][0]["details"]["text"] == "scope needed: user/Observation.rs"
    web = dicomweb_answer(InvalidRequest("two transports"))
    assert web.status == 400 and web.body == {"status": 400, "error": "invalid_request",
                                              "error_description": "two transports"}
    unavailable = dicomweb_answer(IssuerUnavailable())
    assert unavailable.status == 503 and unavailable.headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in unavailable.headers


def test_dimse_answers_are_data() -> None:
    assert MissingCredentials.dimse_reject == (1, 1, 1)
    assert InvalidToken.dimse_reject == (1, 1, 1)
    assert InsufficientScope.dimse_status == 0x0124
