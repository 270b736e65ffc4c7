"""DIMSE access decisions: per-AE services and User Identity (PS3.7 D.3.3.7) with the
A-ASSOCIATE-RJ / status each refusal answers."""
from __future__ import annotations

import pytest
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from gateway.access import ANONYMOUS, IdentityRefused, InvalidToken, ServiceNotPermitted
from gateway.access.dimse import (
    IdentityOffer,
    Service,
    check_service,
    decide_identity,
    parse_ae_permissions,
    service_for_op,
)
from gateway.access.principal import principal_from_claims

GOOD = "header.payload.signature"
ALICE = principal_from_claims({"sub": "alice", "client_id": "pacs-app", "scope": "user/*.rs"},
                              token=GOOD, source="jwt")


def validate(token: str):
    if token != GOOD:
        raise InvalidToken("the access token signature does not verify")
    return ALICE


def test_parse_ae_permissions() -> None:
    table = parse_ae_permissions("VIEWER=find+get, MODALITY=store+echo,*=echo")
    assert table == {"VIEWER": {Service.FIND, Service.GET},
                     "MODALITY": {Service.STORE, Service.ECHO}, "*": {Service.ECHO}}
    assert parse_ae_permissions("") == {}
    for bad, message in (("VIEWER", "expected AET=service"), ("=find", "expected AET=service"),
                         ("VIEWER=", "names no service"), ("VIEWER=fnd", "did you mean 'find'"),
                         ("A" * 17 + "=find", "expected AET=service")):
        with pytest.raises(ValueError, match=message):
            parse_ae_permissions(bad)


def test_check_service() -> None:
    table = parse_ae_permissions("VIEWER=find+get,*=echo")
    check_service(table, "VIEWER  ", Service.GET)  # AE titles are space-padded on the wire
    check_service(table, "ANYONE", Service.ECHO)
    with pytest.raises(ServiceNotPermitted, match="may not use C-STORE") as info:
        check_service(table, "VIEWER", Service.STORE)
    assert info.value.dimse_status == 0x0124
    with pytest.raises(ServiceNotPermitted):
        check_service(parse_ae_permissions("VIEWER=find"), "OTHER", Service.ECHO)  # no `*`
    check_service({}, "ANYONE", Service.STORE)  # empty setting: everything, as before
    assert service_for_op("C-MOVE") is Service.MOVE and service_for_op("find") is Service.FIND


def test_no_identity() -> None:
    assert decide_identity(None, tls=False, required=False, validate=validate) is ANONYMOUS
    with pytest.raises(IdentityRefused, match="required") as info:
        decide_identity(None, tls=True, required=True, validate=validate)
    assert info.value.dimse_reject == (1, 1, 1)


def test_jwt_identity_type_5() -> None:
    offer = IdentityOffer(5, GOOD.encode())
    assert decide_identity(offer, tls=False, required=True, validate=validate) is ALICE
    with pytest.raises(InvalidToken) as info:  # a bad JWT refuses even when not required
        decide_identity(IdentityOffer(5, b"forged.jwt.sig"), tls=False, required=False,
                        validate=validate)
    assert info.value.dimse_reject == (1, 1, 1)
    with pytest.raises(InvalidToken, match="ASCII"):
        decide_identity(IdentityOffer(5, b"\xff\xfe"), tls=False, required=False, validate=validate)


def test_username_and_passcode_type_2_only_over_tls() -> None:
    offer = IdentityOffer(2, b"alice", GOOD.encode())
    with pytest.raises(IdentityRefused, match="over TLS only"):
        decide_identity(offer, tls=False, required=False, validate=validate)
    assert decide_identity(offer, tls=True, required=True, validate=validate) is ALICE
    assert decide_identity(IdentityOffer(2, b"pacs-app", GOOD.encode()), tls=True,
                           required=True, validate=validate) is ALICE
    with pytest.raises(IdentityRefused, match="not the access token's sub"):
        decide_identity(IdentityOffer(2, b"mallory", GOOD.encode()), tls=True, required=False,
                        validate=validate)
    with pytest.raises(InvalidToken):
        decide_identity(IdentityOffer(2, b"alice", b"password123"), tls=True, required=False,
                        validate=validate)


def test_unverifiable_types() -> None:
    for kind in (1, 3, 4):
        offer = IdentityOffer(kind, b"alice")
        assert decide_identity(offer, tls=True, required=False, validate=validate) is ANONYMOUS
        with pytest.raises(IdentityRefused, match=f"type {kind} cannot be verified"):
            decide_identity(offer, tls=True, required=True, validate=validate)


def test_offer_from_pynetdicom_item() -> None:
    item = UserIdentityNegotiation()
    item.user_identity_type = 5
    item.primary_field = GOOD.encode()
    item.positive_response_requested = True
    offer = IdentityOffer.from_pynetdicom(item)
    assert offer == IdentityOffer(5, GOOD.encode(), b"", True)
