"""Access settings: the documented table, typos in GATEWAY_* names and values caught with
the closest known name, and the start-up combinations serve/dimse must refuse."""
from __future__ import annotations

import dataclasses

import pytest

from gateway.access.settings import (
    SETTING_NAMES,
    AccessSettings,
    closest,
    is_loopback_bind,
    settings_table,
    startup_problems,
    unknown_variables,
)
from gateway.config import Settings

DESIGN_KEYS = [
    "AUTH_MODE", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_LEEWAY", "AUTH_INTROSPECTION_URL",
    "AUTH_CLIENT_ID", "AUTH_CLIENT_SECRET", "AUTH_ALLOW_ANONYMOUS_REMOTE",
    "AUTH_RESTRICTED_COLLECTIONS", "AUTH_COLLECTIONS_CLAIM", "VIEWER_OIDC_CLIENT_ID",
    "DIMSE_TLS_BIND", "DIMSE_TLS_CERT", "DIMSE_TLS_KEY", "DIMSE_TLS_CA",
    "DIMSE_REQUIRE_IDENTITY", "DIMSE_AE_PERMISSIONS", "AUDIT_SYSLOG", "AUDIT_SYSLOG_TLS_CA"
]


def known() -> list[str]:
    return [f.name.upper() for f in dataclasses.fields(Settings)] + list(SETTING_NAMES) + ["CONFIG"]


def test_every_setting_of_the_contract_is_documented_with_its_default() -> None:
    # the contract's keys in its order, plus the JWKS refresh knobs (docs/security.md)
    extra = {"AUTH_JWKS_MAX_AGE", "AUTH_JWKS_REFRESH_INTERVAL"}
    assert [k for k in SETTING_NAMES if k not in extra] == DESIGN_KEYS
    assert extra <= set(SETTING_NAMES)
    rows = {key: (default, doc) for key, default, doc in settings_table()}
    assert rows["AUTH_MODE"][0] == "off" and rows["AUTH_LEEWAY"][0] == "30"
    assert rows["AUTH_COLLECTIONS_CLAIM"][0] == "collections"
    assert all(doc.strip() for _, doc in rows.values())
    # Those that joined gateway.config.Settings have the same defaults there.
    wired = {f.name.upper(): f.default for f in dataclasses.fields(Settings)}
    assert {"AUTH_MODE", "AUTH_ISSUER", "AUDIT_SYSLOG"} <= set(wired)
    assert all(str(wired[k]) == rows[k][0] for k in SETTING_NAMES if k in wired)


def test_from_env_coerces_and_validates() -> None:
    s = AccessSettings.from_env({"GATEWAY_AUTH_MODE": "public-read", "GATEWAY_AUTH_LEEWAY": "5",
                                 "GATEWAY_DIMSE_REQUIRE_IDENTITY": "true",
                                 "GATEWAY_AUTH_RESTRICTED_COLLECTIONS": "LIDC, SECRET ,"})
    assert (s.auth_mode, s.auth_leeway, s.dimse_require_identity) == ("public-read", 5, True)
    assert s.restricted_collections == {"LIDC", "SECRET"}
    assert s.audience("http://gw.example/") == "http://gw.example/"
    with pytest.raises(ValueError, match="did you mean 'required'"):
        AccessSettings.from_env({"GATEWAY_AUTH_MODE": "requried"})
    with pytest.raises(ValueError, match="not a whole number"):
        AccessSettings.from_env({"GATEWAY_AUTH_LEEWAY": "half a minute"})
    with pytest.raises(ValueError, match="not a boolean"):
        AccessSettings.from_env({"GATEWAY_DIMSE_REQUIRE_IDENTITY": "sometimes"})


def test_unknown_gateway_variables_name_the_closest_setting() -> None:
    env = {"GATEWAY_AUTHMODE": "required", "GATEWAY_AUTH_MODE": "off", "GATEWAY_DATA_DIR": "/x",
           "GATEWAY_PUBLIC_ULR": "http://x", "GATEWAY_CONFIG": "/etc/gw.toml",
           "GATEWAY_ZZZZ": "1", "PATH": "/bin", "GATEWAYX": "1"}
    assert unknown_variables(env, known()) == [
        ("GATEWAY_AUTHMODE", "GATEWAY_AUTH_MODE"), ("GATEWAY_PUBLIC_ULR", "GATEWAY_PUBLIC_URL"),
        ("GATEWAY_ZZZZ", None)]
    assert unknown_variables({"GATEWAY_AUTH_ISUER": "x"}, known()) == [
        ("GATEWAY_AUTH_ISUER", "GATEWAY_AUTH_ISSUER")]
    assert closest("public_read", ["off", "public-read", "required"]) == "public-read"


def test_startup_refusals() -> None:
    off = AccessSettings()
    assert startup_problems(off, binds=["127.0.0.1:8080", "[::1]:11112", "localhost:1"]) == []
    problems = startup_problems(off, binds=["0.0.0.0:8080"])
    assert len(problems) == 1 and "AUTH_ALLOW_ANONYMOUS_REMOTE=true" in problems[0]
    assert "anyone on the network" in problems[0]
    assert startup_problems(AccessSettings(auth_allow_anonymous_remote=True),
                            binds=["0.0.0.0:8080"]) == []
    on = AccessSettings(auth_mode="required", auth_issuer="https://idp.example")
    assert startup_problems(on, binds=["0.0.0.0:8080"], cors_origins="https://viewer.example") == []
    assert "CORS_ORIGINS=*" in startup_problems(on, binds=[], cors_origins="*")[0]
    no_issuer = startup_problems(AccessSettings(auth_mode="public-read"), binds=[])
    assert "needs AUTH_ISSUER" in no_issuer[0]
    half = AccessSettings(auth_mode="required", auth_introspection_url="https://idp/introspect")
    assert "AUTH_CLIENT_ID and AUTH_CLIENT_SECRET" in startup_problems(half, binds=[])[0]


@pytest.mark.parametrize("bind, loopback", [
    ("127.0.0.1:8080", True), ("127.1.2.3:1", True), ("[::1]:80", True), ("localhost:9", True),
    ("0.0.0.0:8080", False), ("[::]:80", False), ("10.0.0.5:80", False), ("gw.example:80", False),
])
def test_loopback_binds(bind: str, loopback: bool) -> None:
    assert is_loopback_bind(bind) is loopback
