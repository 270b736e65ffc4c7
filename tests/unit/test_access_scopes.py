"""SMART App Launch 2.x scopes (v2 grammar, v1 mapping, granular categories) and the policy
every face consults (modes, compartments, collections, the scope an error names)."""
from __future__ import annotations

import pytest

from gateway.access import (
    ANONYMOUS,
    AuthMode,
    InsufficientScope,
    MissingCredentials,
    Policy,
)
from gateway.access.principal import principal_from_claims
from gateway.access.scopes import (
    DicomOp,
    decide,
    dicom_permissions,
    parse_permissions,
    parse_scope,
    parse_scopes,
    token_matches,
)

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def principal(scope: str | list[str], **claims: object):
    return principal_from_claims({"sub": "u", "client_id": "c", "scope": scope, **claims},
                                 token="t", source="jwt")


class _Validator:
    """Stands in for TokenValidator in policy tests that only need `principal(token)`."""

    def __init__(self, p) -> None:
        self.p = p

    def principal(self, token: str):
        return self.p


def policy(mode: str = "required", p=None, restricted=()) -> Policy:
    return Policy(mode, _Validator(p or principal("")), restricted_collections=restricted)


@pytest.mark.parametrize("text, letters", [
    ("cruds", "cruds"), ("rs", "rs"), ("r", "r"), ("cud", "cud"), ("s", "s"),
    ("read", "rs"), ("write", "cud"), ("*", "cruds"),
    ("sr", None), ("rr", None), ("x", None), ("", None), ("readwrite", None),
])
def test_permissions_v2_order_and_v1_mapping(text: str, letters: str | None) -> None:
    got = parse_permissions(text)
    assert (None if got is None else "".join(c for c in "cruds" if c in got)) == letters


def test_scope_grammar() -> None:
    s = parse_scope("patient/ImagingStudy.rs")
    assert (s.context, s.resource, s.permissions, s.category) == (
        "patient", "ImagingStudy", frozenset("rs"), None)
    assert parse_scope("system/*.cruds").resource == "*"
    assert parse_scope("user/Observation.read").permissions == frozenset("rs")
    assert parse_scope(f"user/Observation.rs?category={LAB}").category == LAB
    for bad in ("openid", "fhirUser", "launch/patient", "offline_access", "patient/imagingstudy.r",
                "admin/ImagingStudy.r", "patient/ImagingStudy", "patient/ImagingStudy.rsx",
                f"user/ImagingStudy.rs?category={LAB}",       # category only on granular types
                "user/Observation.rs?code=http://loinc.org|1-8",  # a parameter we cannot enforce
                f"user/Observation.rs?category={LAB}&code=x"):
        assert parse_scope(bad) is None, bad
    grants = parse_scopes("openid fhirUser patient/*.rs launch/patient")
    assert [s.raw for s in grants.scopes] == ["patient/*.rs"]
    assert grants.ignored == ("openid", "fhirUser", "launch/patient")
    assert parse_scopes(["user/Patient.r", "user/Patient.s"]).raw == ("user/Patient.r", "user/Patient.s")


def test_decide_letters_wildcards_and_contexts() -> None:
    grants = parse_scopes("patient/ImagingStudy.s user/Patient.rs")
    assert decide(grants, "ImagingStudy", "s").allowed
    assert decide(grants, "ImagingStudy", "s").compartment_only
    assert decide(grants, "ImagingStudy", "r").missing == "r"
    assert not decide(grants, "Patient", "rs").compartment_only
    star = parse_scopes("system/*.read")
    assert decide(star, "Condition", "rs").allowed and not decide(star, "Condition", "c").allowed
    both = parse_scopes("patient/ImagingStudy.rs user/ImagingStudy.rs")
    assert not decide(both, "ImagingStudy", "rs").compartment_only  # user/ wins


def test_granular_category_scopes() -> None:
    lab = parse_scopes(f"patient/Observation.rs?category={LAB}")
    assert decide(lab, "Observation", "r", [LAB]).allowed
    assert decide(lab, "Observation", "r", [VITALS, LAB]).allowed  # one matching category is enough
    assert not decide(lab, "Observation", "r", [VITALS]).allowed
    search = decide(lab, "Observation", "s")  # a category-less search is narrowed, not refused
    assert search.allowed and search.categories == {LAB}
    assert decide(parse_scopes("patient/Observation.rs"), "Observation", "s").categories is None
    code_only = parse_scopes("user/Condition.rs?category=problem-list-item")
    assert decide(code_only, "Condition", "r",
                  ["http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"]).allowed
    assert token_matches("a|b", "a|b") and not token_matches("a|b", "x|b")
    assert token_matches("b", "x|b")


def test_dicom_operations_map_to_imaging_study_permissions() -> None:
    assert {op: dicom_permissions(op) for op in DicomOp} == {
        DicomOp.QIDO: "s", DicomOp.C_FIND: "s", DicomOp.WADO: "r", DicomOp.WADO_URI: "r",
        DicomOp.RENDERED: "r", DicomOp.THUMBNAIL: "r", DicomOp.BULKDATA: "r",
        DicomOp.C_GET: "r", DicomOp.C_MOVE: "r", DicomOp.STOW: "c", DicomOp.C_STORE: "c"}
    assert dicom_permissions(DicomOp.STOW, replaces=True) == "cu"


def test_policy_compartment_and_needed_scope() -> None:
    pat = principal("patient/ImagingStudy.rs", patient="PAT-A")
    permit = policy(p=pat).authorize_dicom(pat, DicomOp.QIDO)
    assert permit.patient == "PAT-A" and permit.granted_by == ("patient/ImagingStudy.rs",)
    with pytest.raises(InsufficientScope) as info:
        policy(p=pat).authorize_dicom(pat, DicomOp.STOW)
    assert info.value.scope == "patient/ImagingStudy.c" and info.value.status == 403
    clinician = principal("user/ImagingStudy.rs user/ImagingStudy.c")
    assert policy(p=clinician).authorize_dicom(clinician, DicomOp.C_STORE).unrestricted
    with pytest.raises(InsufficientScope) as info:
        policy(p=clinician).authorize_dicom(clinician, DicomOp.STOW, replaces=True)
    assert info.value.scope == "user/ImagingStudy.cu"
    backend = principal("system/ImagingStudy.s")
    with pytest.raises(InsufficientScope) as info:
        policy(p=backend).authorize(backend, "Observation", "rs", [LAB])
    assert info.value.scope == f"system/Observation.rs?category={LAB}"
    no_patient = principal("patient/*.rs")
    with pytest.raises(InsufficientScope, match="without a patient claim"):
        policy(p=no_patient).authorize(no_patient, "Patient", "r")


def test_the_audit_trail_needs_user_or_system_scopes() -> None:
    pat = principal("patient/*.rs", patient="PAT-A")
    with pytest.raises(InsufficientScope, match="user/ or system/") as info:
        policy(p=pat).authorize(pat, "AuditEvent", "s")
    assert info.value.scope == "user/AuditEvent.s"
    for scope in ("user/AuditEvent.rs", "system/AuditEvent.rs", "system/*.read"):
        auditor = principal(scope)
        assert policy(p=auditor).authorize(auditor, "AuditEvent", "rs").unrestricted


def test_v1_scopes_work_as_v2() -> None:
    p = principal("patient/*.read", patient="PAT-A")
    assert policy(p=p).authorize_dicom(p, DicomOp.WADO).patient == "PAT-A"
    with pytest.raises(InsufficientScope):
        policy(p=p).authorize_dicom(p, DicomOp.STOW)
    writer = principal("user/ImagingStudy.write")
    assert policy(p=writer).authorize_dicom(writer, DicomOp.STOW, replaces=True).unrestricted


def test_modes() -> None:
    off = Policy("off")
    assert off.authenticate(None) is ANONYMOUS and off.authenticate("garbage") is ANONYMOUS
    assert off.authorize(ANONYMOUS, "AuditEvent", "cruds").unrestricted
    public = policy("public-read")
    assert public.authenticate(None) is ANONYMOUS
    assert public.authorize(ANONYMOUS, "ImagingStudy", "rs").unrestricted
    for resource, perms in (("ImagingStudy", "c"), ("AuditEvent", "s"), ("Patient", "u")):
        with pytest.raises(MissingCredentials) as info:
            public.authorize(ANONYMOUS, resource, perms)
        assert info.value.www_authenticate() == 'Bearer realm="tcia-gateway"'
    required = policy("required")
    with pytest.raises(MissingCredentials):
        required.authenticate(None)
    with pytest.raises(MissingCredentials):
        required.authorize(ANONYMOUS, "ImagingStudy", "s")
    token_holder = principal("user/ImagingStudy.s")
    assert policy("public-read", token_holder).authenticate("tok") is token_holder
    with pytest.raises(ValueError, match="needs a token validator"):
        Policy(AuthMode.REQUIRED)


def test_restricted_collections() -> None:
    granted = principal("user/*.rs", collections="LIDC COVID-19-AR")
    other = principal("user/*.rs")
    p = policy("public-read", restricted=["LIDC", "SECRET"])
    assert p.collection_visible(granted, "LIDC") and not p.collection_visible(granted, "SECRET")
    assert not p.collection_visible(other, "LIDC") and not p.collection_visible(ANONYMOUS, "LIDC")
    assert p.collection_visible(ANONYMOUS, "COVID-19-AR")
    assert p.hidden_collections(granted) == {"SECRET"}
    assert p.hidden_collections(ANONYMOUS) == {"LIDC", "SECRET"}
    assert Policy("off", restricted_collections=["LIDC"]).collection_visible(ANONYMOUS, "LIDC")


def test_principal_never_holds_the_token() -> None:
    token = "eyJ.secret-token-value.sig"
    p = principal_from_claims({"sub": "u", "client_id": "c", "scope": "user/*.rs", "jti": "j1"},
                              token=token, source="jwt")
    assert token not in repr(p) and p.token_hash and p.token_hash not in token
    assert p.log_fields() == {"sub": "u", "client_id": "c", "jti": "j1", "token": p.token_hash}
