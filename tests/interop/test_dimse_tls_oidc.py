"""DIMSE with tokens from a real identity provider (panva's oidc-provider 8.8.1, client
credentials): the `patient-a` client's token (SMART `patient` claim = a cohort patient)
narrows C-FIND to that patient over TLS, C-GET of patient B's study answers like an unknown
UID, and DCMTK's `storescu --jwt` stores into A but is refused 0x0124 for B (nothing
stored); the `backend` client's system/ token sees every patient."""
from __future__ import annotations

import ssl
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from gateway.dimse import contexts as cx
from tests.support import dcmtk
from tests.support.dicomfiles import make_file
from tests.support.oidc_idp import OidcProvider, start_oidc
from tests.support.procs import free_port, port_open, wait_until
from tests.support.remote import Scp, start_scp
from tests.support.tlscerts import make_ca

pytestmark = pytest.mark.timeout(300)
AET = "TCIAGW"


@pytest.fixture(scope="module")
def cohort_patients(small_cohort) -> dict[str, set[str]]:
    """PatientID -> StudyInstanceUIDs, from the cohort's files."""
    out: dict[str, set[str]] = defaultdict(set)
    for path in Path(small_cohort.root).rglob("*.dcm"):
        ds = dcmread(path, stop_before_pixels=True)
        out[str(ds.PatientID)].add(str(ds.StudyInstanceUID))
    return dict(out)


@pytest.fixture(scope="module")
def idp(cohort_patients, artifacts_dir: Path) -> Iterator[OidcProvider]:
    a, b = sorted(cohort_patients)[:2]
    provider = start_oidc(artifacts_dir / "logs", patient_a=a, patient_b=b)
    yield provider
    provider.close()


@pytest.fixture
def gateway(data_copy: Path, artifacts_dir: Path, tmp_path: Path,
            idp: OidcProvider) -> Iterator[tuple[Scp, int, Path]]:
    ca = make_ca(tmp_path / "pki")
    cert = ca.issue(tmp_path / "pki", "scp")
    tls_port = free_port()
    env = {"GATEWAY_AUTH_MODE": "required", "GATEWAY_AUTH_ISSUER": idp.issuer,
           "GATEWAY_AUTH_AUDIENCE": idp.audience, "GATEWAY_AUTH_CLIENT_ID": "gateway",
           "GATEWAY_AUTH_CLIENT_SECRET": str(idp.client("gateway").secret),
           "GATEWAY_DIMSE_TLS_BIND": f"127.0.0.1:{tls_port}",
           "GATEWAY_DIMSE_TLS_CERT": str(cert.cert), "GATEWAY_DIMSE_TLS_KEY": str(cert.key)}
    scp = start_scp(data_copy, artifacts_dir / "logs", extra_env=env)
    try:
        wait_until(lambda: port_open(tls_port), timeout=20, what="TLS listener", proc=scp.proc)
        yield scp, tls_port, ca.cert
    finally:
        scp.proc.stop()


def associate(port: int, token: str, ca: Path, user: str | None = None) -> Association:
    """Over TLS with a type 5 identity (the token), or type 2 (`user` + the token)."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(cx.FIND_MODELS["S"])
    ae.add_requested_context(cx.GET_MODELS["S"])
    item = UserIdentityNegotiation()
    item.user_identity_type = 5 if user is None else 2
    if user is None:
        item.primary_field = token.encode()
    else:
        item.primary_field, item.secondary_field = user.encode(), token.encode()
    ctx = ssl.create_default_context(cafile=str(ca))
    assoc = ae.associate("127.0.0.1", port, ae_title=AET, ext_neg=[item],
                         tls_args=(ctx, "127.0.0.1"))
    assert assoc.is_established
    return assoc


def studies_found(assoc: Association) -> dict[str, str]:
    """StudyInstanceUID -> PatientID of a STUDY-level C-FIND for everything."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientID = ""
    out, final = {}, None
    for status, ident in assoc.send_c_find(ds, cx.FIND_MODELS["S"]):
        if status.Status in (0xFF00, 0xFF01):
            out[str(ident.StudyInstanceUID)] = str(ident.PatientID)
        else:
            final = int(status.Status)
    assert final == 0
    return out


def get_status(assoc: Association, study: str) -> tuple[int, int]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study
    finals = [s for s, _ in assoc.send_c_get(ds, cx.GET_MODELS["S"])
              if s and s.Status not in (0xFF00, 0xFF01)]
    last = finals[-1]
    return int(last.Status), int(last.get("NumberOfCompletedSuboperations", 0) or 0)


def test_patient_token_from_the_idp_narrows_every_dimse_operation(gateway, idp, cohort_patients,
                                                                  tmp_path: Path) -> None:
    scp, tls_port, ca = gateway
    a, b = sorted(cohort_patients)[:2]
    token_a = idp.token("patient-a", "patient/ImagingStudy.cruds")
    mine = associate(tls_port, token_a, ca)
    assert set(studies_found(mine).values()) == {a}
    assert set(studies_found(mine)) == cohort_patients[a]
    theirs = next(iter(cohort_patients[b]))
    assert get_status(mine, theirs) == get_status(mine, "1.2.3.4.5.6.7.8.9") == (0, 0)
    mine.release()

    jwt = tmp_path / "a.jwt"
    jwt.write_text(token_a)
    refused = dcmtk.run("storescu", ["-v", "--jwt", jwt, *dcmtk.peer_args(AET, scp.port),
                                     make_file(tmp_path / "b.dcm", patient=b, study=theirs,
                                               series="se-b", sop="i-b")], check=False)
    assert "Received Store Response (Unknown Status: 0x124)" in refused.stdout + refused.stderr
    dcmtk.run("storescu", ["--jwt", jwt, *dcmtk.peer_args(AET, scp.port),
                           make_file(tmp_path / "a.dcm", patient=a, study="st-new-a",
                                     series="se-a", sop="i-a")])

    everyone = associate(tls_port, idp.token("backend", "system/ImagingStudy.rs"), ca)
    found = studies_found(everyone)
    everyone.release()
    assert set(found.values()) == set(cohort_patients)           # nothing of B's was added
    assert sum(p == b for p in found.values()) == len(cohort_patients[b])
    assert sum(p == a for p in found.values()) == len(cohort_patients[a]) + 1


def test_opaque_token_as_username_and_passcode_over_tls(gateway, idp, cohort_patients) -> None:
    """Type 2 with an opaque token, checked by RFC 7662 introspection (AUTH_CLIENT_ID)."""
    _, tls_port, ca = gateway
    opaque = idp.token("clinician", "user/ImagingStudy.rs", opaque=True)
    assert opaque.count(".") != 2
    assoc = associate(tls_port, opaque, ca, user="clinician")
    assert set(studies_found(assoc).values()) == set(cohort_patients)
    assoc.release()
