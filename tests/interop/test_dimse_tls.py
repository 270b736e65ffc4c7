"""DCMTK against the real `tcia-gateway dimse` process with access control on: findscu and
storescu over DICOM TLS (PS3.15 B.12, `+tls` with client certificates), storescu's User
Identity (`--jwt`, and `--user/--password` over TLS only), an association without identity
refused when DIMSE_REQUIRE_IDENTITY is set, TLS 1.1 refused (`openssl s_client -tls1_1`),
and the start refused when the SCP would be open on a non-loopback address.

DCMTK 3.6.7's getscu and movescu have no TLS options and findscu no identity options:
C-GET over TLS is driven by pynetdicom here. Tokens: the forge behind a loopback issuer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.support import dcmtk
from tests.support.dicomfiles import make_file
from tests.support.oidc_idp import DEFAULT_AUDIENCE
from tests.support.procs import REPO, free_port, port_open, wait_until
from tests.support.remote import Scp, start_scp
from tests.support.tlscerts import make_ca

pytestmark = pytest.mark.timeout(300)
AET = "TCIAGW"
SYSTEM = "system/*.cruds"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = make_ca(tmp_path / "pki")
    scp, scu = ca.issue(tmp_path / "pki", "scp"), ca.issue(tmp_path / "pki", "scu", client=True)
    return {"ca": ca.cert, "scp_cert": scp.cert, "scp_key": scp.key, "scu_cert": scu.cert,
            "scu_key": scu.key}


@pytest.fixture
def gateway(data_copy: Path, artifacts_dir: Path, pki: dict[str, Path],
            forged_issuer) -> Iterator[tuple[Scp, int]]:
    """The dimse process: plain + TLS (client certificates required), identity required."""
    tls_port = free_port()
    env = {"GATEWAY_DIMSE_TLS_BIND": f"127.0.0.1:{tls_port}",
           "GATEWAY_DIMSE_TLS_CERT": str(pki["scp_cert"]),
           "GATEWAY_DIMSE_TLS_KEY": str(pki["scp_key"]), "GATEWAY_DIMSE_TLS_CA": str(pki["ca"]),
           "GATEWAY_AUTH_MODE": "required", "GATEWAY_AUTH_ISSUER": forged_issuer.url,
           "GATEWAY_AUTH_AUDIENCE": DEFAULT_AUDIENCE, "GATEWAY_DIMSE_REQUIRE_IDENTITY": "true"}
    scp = start_scp(data_copy, artifacts_dir / "logs", extra_env=env)
    try:
        wait_until(lambda: port_open(tls_port), timeout=20, what="TLS listener", proc=scp.proc)
        yield scp, tls_port
    finally:
        scp.proc.stop()


def tls_args(pki: dict[str, Path]) -> list[str]:
    return ["+tls", str(pki["scu_key"]), str(pki["scu_cert"]), "+cf", str(pki["ca"])]


def jwt_file(tmp_path: Path, token: str, name: str = "token.jwt") -> Path:
    path = tmp_path / name
    path.write_text(token)
    return path


def study_count(data_copy: Path) -> int:
    from gateway.archive.local import open_local
    from gateway.config import Settings
    archive = open_local(Settings().replace(data_dir=data_copy))
    try:
        return archive.index.counts()["instances"]
    finally:
        archive.close()


def new_file(tmp_path: Path, patient: str, name: str) -> Path:
    return make_file(tmp_path / f"{name}.dcm", patient=patient, study=f"st-{name}",
                     series=f"se-{name}", sop=f"i-{name}")


def test_findscu_and_storescu_over_tls_with_jwt(gateway, pki, tmp_path, forged_issuer,
                                                data_copy) -> None:
    scp, tls_port = gateway
    before = study_count(data_copy)
    token = jwt_file(tmp_path, forged_issuer.forge.token(SYSTEM))
    stored = dcmtk.run("storescu", ["-v", *tls_args(pki), "--jwt", token, "-rsp",
                                    *dcmtk.peer_args(AET, tls_port),
                                    new_file(tmp_path, "TLS-PATIENT", "tls")])
    assert "Received Store Response (Success)" in stored.stdout + stored.stderr
    assert study_count(data_copy) == before + 1
    # findscu has no identity options: a TLS association without identity is refused ...
    refused = dcmtk.run("findscu", ["-S", *tls_args(pki), *dcmtk.peer_args(AET, tls_port),
                                    "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=TLS-PATIENT"],
                        check=False)
    assert refused.returncode != 0
    assert "Association Rejected" in refused.stdout + refused.stderr


def test_findscu_over_tls(data_copy, artifacts_dir, pki, tmp_path) -> None:
    """findscu +tls against a TLS listener requiring client certificates (AUTH_MODE=off
    on loopback: the certificate is the credential)."""
    tls_port = free_port()
    env = {"GATEWAY_DIMSE_TLS_BIND": f"127.0.0.1:{tls_port}",
           "GATEWAY_DIMSE_TLS_CERT": str(pki["scp_cert"]),
           "GATEWAY_DIMSE_TLS_KEY": str(pki["scp_key"]), "GATEWAY_DIMSE_TLS_CA": str(pki["ca"])}
    scp = start_scp(data_copy, artifacts_dir / "logs", extra_env=env)
    try:
        wait_until(lambda: port_open(tls_port), timeout=20, what="TLS listener", proc=scp.proc)
        out = tmp_path / "find"
        out.mkdir()
        found = dcmtk.run("findscu", ["-v", "-S", *tls_args(pki), "-X", "-od", str(out),
                                      *dcmtk.peer_args(AET, tls_port),
                                      "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"])
        responses = [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
        assert len(responses) >= 6
        assert "Received Final Find Response (Success)" in found.stdout + found.stderr
        # without a client certificate the handshake fails: nothing is served
        anonymous = dcmtk.run("findscu", ["-S", "+tla", "+cf", str(pki["ca"]),
                                          *dcmtk.peer_args(AET, tls_port),
                                          "-k", "QueryRetrieveLevel=STUDY"], check=False)
        assert anonymous.returncode != 0
    finally:
        scp.proc.stop()


def test_storescu_jwt_identity_required(gateway, tmp_path, forged_issuer, data_copy) -> None:
    scp, _ = gateway
    before = study_count(data_copy)
    without = dcmtk.run("storescu", [*dcmtk.peer_args(AET, scp.port),
                                     new_file(tmp_path, "P-X", "none")], check=False)
    text = without.stdout + without.stderr
    assert "Association Rejected" in text
    assert "Rejected Permanent, Source: Service User" in text and "Reason: No Reason" in text
    bad = jwt_file(tmp_path, forged_issuer.forge.expired(SYSTEM), "bad.jwt")
    rejected = dcmtk.run("storescu", ["--jwt", bad, *dcmtk.peer_args(AET, scp.port),
                                      new_file(tmp_path, "P-X", "bad")], check=False)
    assert "Association Rejected" in rejected.stdout + rejected.stderr
    good = jwt_file(tmp_path, forged_issuer.forge.token(SYSTEM))
    dcmtk.run("storescu", ["--jwt", good, *dcmtk.peer_args(AET, scp.port),
                           new_file(tmp_path, "P-X", "good")])
    assert study_count(data_copy) == before + 1


def test_storescu_user_and_token_only_over_tls(gateway, pki, tmp_path, forged_issuer,
                                               data_copy) -> None:
    scp, tls_port = gateway
    before = study_count(data_copy)
    token = forged_issuer.forge.token(SYSTEM, sub="alice")
    clear = dcmtk.run("storescu", ["--user", "alice", "--password", token,
                                   *dcmtk.peer_args(AET, scp.port),
                                   new_file(tmp_path, "P-U", "clear")], check=False)
    assert "Association Rejected" in clear.stdout + clear.stderr
    dcmtk.run("storescu", [*tls_args(pki), "--user", "alice", "--password", token,
                           *dcmtk.peer_args(AET, tls_port), new_file(tmp_path, "P-U", "tls")])
    assert study_count(data_copy) == before + 1


def test_storescu_patient_token_cannot_store_into_another_patient(gateway, tmp_path,
                                                                  forged_issuer,
                                                                  data_copy) -> None:
    scp, _ = gateway
    before = study_count(data_copy)
    token = jwt_file(tmp_path, forged_issuer.forge.token("patient/*.cruds", patient="P-A"))
    refused = dcmtk.run("storescu", ["-v", "--jwt", token, *dcmtk.peer_args(AET, scp.port),
                                     new_file(tmp_path, "P-B", "other")], check=False)
    text = refused.stdout + refused.stderr
    assert "Received Store Response (Unknown Status: 0x124)" in text, text
    assert study_count(data_copy) == before


def test_tls_1_1_is_refused(gateway) -> None:
    _, tls_port = gateway
    proc = subprocess.run(["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                           "-connect", f"127.0.0.1:{tls_port}"], input=b"", capture_output=True,
                          timeout=30)
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode != 0
    assert "protocol version" in text or "unsupported protocol" in text, text
    ok = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{tls_port}"],
                        input=b"", capture_output=True, timeout=30)
    assert b"Protocol  : TLSv1.2" in ok.stdout or b"TLSv1.2" in ok.stdout


def test_c_get_over_tls_with_pynetdicom(gateway, pki, forged_issuer) -> None:
    """getscu 3.6.7 has no TLS: the same C-GET with pynetdicom's TLS and a JWT identity."""
    import ssl

    from pynetdicom import AE, build_role, evt
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    from gateway.dimse import contexts as cx

    _, tls_port = gateway
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    ctx.load_cert_chain(str(pki["scu_cert"]), str(pki["scu_key"]))
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(cx.FIND_MODELS["S"])
    ae.add_requested_context(cx.GET_MODELS["S"])
    roles = []
    for uid in cx.RETRIEVE_SOP_CLASSES[:60]:
        ae.add_requested_context(uid)
        roles.append(build_role(uid, scp_role=True))
    item = UserIdentityNegotiation()
    item.user_identity_type = 5
    item.primary_field = forged_issuer.forge.token(SYSTEM).encode()
    received: list[str] = []

    def on_store(event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0

    assoc = ae.associate("127.0.0.1", tls_port, ae_title=AET, ext_neg=[*roles, item],
                         tls_args=(ctx, "127.0.0.1"), evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.NumberOfStudyRelatedInstances = ""
    found = [(str(i.StudyInstanceUID), int(i.NumberOfStudyRelatedInstances))
             for s, i in assoc.send_c_find(ds, cx.FIND_MODELS["S"])
             if s and s.Status in (0xFF00, 0xFF01)]
    assert len(found) >= 6
    study, count = found[0]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    finals = [s for s, _ in assoc.send_c_get(query, cx.GET_MODELS["S"])
              if s and s.Status not in (0xFF00, 0xFF01)]
    assoc.release()
    assert finals and finals[-1].Status == 0
    assert len(received) == count


def test_dimse_refuses_to_start_open_on_a_non_loopback_bind(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"),
           "GATEWAY_DIMSE_BIND": f"0.0.0.0:{free_port()}", "GATEWAY_LOG_LEVEL": "WARNING"}
    import os
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.run([sys.executable, "-m", "gateway", "dimse"], env={**base, **env},
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "AUTH_MODE=off" in proc.stderr
    assert "AUTH_ALLOW_ANONYMOUS_REMOTE" in proc.stderr
