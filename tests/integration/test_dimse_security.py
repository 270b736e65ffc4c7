"""DIMSE access control on the gateway's own SCP (in-process, real pynetdicom peers on
loopback): calling AE and peer hosts (A-ASSOCIATE-RJ 1,1,3), User Identity (PS3.7 D.3.3.7:
type 5 JWT checked by the same validator as Bearer tokens, type 2 only over TLS, missing or
bad -> 1,1,1), per-AE services and scopes (0x0124), patient compartments on C-FIND / C-GET /
C-MOVE / C-STORE, and the audit trail of every outcome. Tokens come from the forge behind a
loopback issuer (tests/support/forged_issuer.py)."""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from gateway.archive import UidPath
from gateway.archive.local import open_local
from gateway.audit.store import AuditQuery
from gateway.audit.trail import AuditTrail
from gateway.config import Settings
from gateway.dimse import contexts as cx
from gateway.scp import server as scp
from gateway.scp.auditing import open_trail
from tests.support.dicomfiles import make_file
from tests.support.oidc_idp import DEFAULT_AUDIENCE
from tests.support.procs import free_port
from tests.support.tlscerts import CertAuthority, make_ca

pytestmark = pytest.mark.timeout(120)
AET = "TCIAGW"
STUDY_FIND = cx.FIND_MODELS["S"]
STUDY_GET = cx.GET_MODELS["S"]
STUDY_MOVE = cx.MOVE_MODELS["S"]
SYSTEM = "system/*.cruds"


@dataclass
class Running:
    port: int
    tls_port: int | None
    archive: object
    trail: AuditTrail | None
    files: dict[str, list[Path]]    # PatientID -> files stored
    studies: dict[str, str]         # PatientID -> StudyInstanceUID

    def audit(self, **query) -> list[dict]:
        assert self.trail is not None and self.trail.flush(10)
        return self.trail.store.search(AuditQuery(**query))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertAuthority, object, object]:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root)
    return ca, ca.issue(root, "scp"), ca.issue(root, "scu", client=True)


@pytest.fixture
def start(tmp_path: Path, pki) -> Iterator[Callable[..., Running]]:
    """Start an SCP on a fresh archive holding patients P1, P2, P3 (one study, 2 CTs each)."""
    started: list = []

    def run(tls: bool = False, **changes) -> Running:
        data = tmp_path / f"data{len(started)}"
        port = free_port()
        tls_port = free_port() if tls else None
        ca, cert, _ = pki
        extra = dict(dimse_tls_bind=f"127.0.0.1:{tls_port}", dimse_tls_cert=str(cert.cert),
                     dimse_tls_key=str(cert.key)) if tls else {}
        settings = Settings().replace(data_dir=data, dimse_bind=f"127.0.0.1:{port}",
                                      ae_title=AET, **{**extra, **changes})
        archive = open_local(settings)
        files: dict[str, list[Path]] = {}
        studies: dict[str, str] = {}
        for p in ("P1", "P2", "P3"):
            for i in (1, 2):
                path = make_file(tmp_path / f"src{len(started)}" / f"{p}-{i}.dcm", patient=p,
                                 study=f"st-{p}", series=f"se-{p}", sop=f"i-{p}-{i}")
                assert archive.store(path).ok
                files.setdefault(p, []).append(path)
            studies[p] = str(dcmread(files[p][0]).StudyInstanceUID)
        trail = open_trail(settings)
        servers = scp.listen(settings, archive, trail=trail)
        started.append((servers, archive, trail))
        return Running(port, tls_port, archive, trail, files, studies)

    yield run
    for servers, archive, trail in started:
        for server in servers:
            server.shutdown()
        if trail is not None:
            trail.close()
        archive.close()


def issuer_settings(issuer, **extra) -> dict:
    return dict(auth_issuer=issuer.url, auth_audience=DEFAULT_AUDIENCE, **extra)


# ---------------------------------------------------------------- SCU helpers
def identity(kind: int, primary: bytes, secondary: bytes = b"",
             response: bool = False) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.primary_field = primary
    if secondary:
        item.secondary_field = secondary
    item.positive_response_requested = response
    return item


def associate(port: int, *, calling: str = "SCU", called: str = AET, token: str | None = None,
              item: UserIdentityNegotiation | None = None,
              tls: ssl.SSLContext | None = None, store: bool = True) -> Association:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for uid in (STUDY_FIND, STUDY_GET, STUDY_MOVE, cx.VERIFICATION if hasattr(cx, "VERIFICATION")
                else "1.2.840.10008.1.1"):
        ae.add_requested_context(uid)
    roles = []
    if store:
        from pynetdicom.sop_class import CTImageStorage
        ae.add_requested_context(CTImageStorage)
        from pynetdicom import build_role
        roles = [build_role(CTImageStorage, scu_role=True, scp_role=True)]
    if token is not None:
        item = identity(5, token.encode())
    ext = [*roles, *([item] if item is not None else [])]
    handlers = [(evt.EVT_C_STORE, lambda e: 0x0000)]
    return ae.associate("127.0.0.1", port, ae_title=called, ext_neg=ext or None,
                        evt_handlers=handlers,
                        tls_args=(tls, "127.0.0.1") if tls is not None else None)


def rejection(assoc: Association) -> tuple[int, int, int] | None:
    if not assoc.is_rejected:
        return None
    rsp = assoc.acceptor.primitive
    return int(rsp.result), int(rsp.result_source), int(rsp.diagnostic)


def find(assoc: Association, level: str = "STUDY", **keys) -> tuple[int, list[Dataset]]:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.PatientID = keys.pop("PatientID", "")
    ds.StudyInstanceUID = keys.pop("StudyInstanceUID", "")
    for k, v in keys.items():
        setattr(ds, k, v)
    out, final = [], None
    for status, ident in assoc.send_c_find(ds, STUDY_FIND):
        if status.Status in (0xFF00, 0xFF01):
            out.append(ident)
        else:
            final = int(status.Status)
    assert final is not None
    return final, out


def get(assoc: Association, study: str) -> tuple[int, int]:
    """(final status, completed sub-operations)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study
    final = completed = None
    for status, _ in assoc.send_c_get(ds, STUDY_GET):
        if status and status.Status not in (0xFF00, 0xFF01):
            final = int(status.Status)
            completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
    assert final is not None
    return final, int(completed or 0)


def move(assoc: Association, study: str, destination: str) -> tuple[int, int]:
    """(final status, completed sub-operations) of a STUDY-level C-MOVE."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study
    final = completed = None
    for status, _ in assoc.send_c_move(ds, destination, STUDY_MOVE):
        if status and status.Status not in (0xFF00, 0xFF01):
            final = int(status.Status)
            completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
    assert final is not None
    return final, int(completed or 0)


@pytest.fixture
def destination() -> Iterator[tuple[str, list[str]]]:
    """A pynetdicom Storage SCP as C-MOVE destination DEST: (KNOWN_AES entry, received UIDs)."""
    from pynetdicom import AllStoragePresentationContexts
    received: list[str] = []
    ae = AE(ae_title="DEST")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()

    def on_store(event) -> int:  # noqa: ANN001
        received.append(str(event.dataset.SOPInstanceUID))
        return 0

    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield f"DEST@127.0.0.1:{port}", received
    server.shutdown()


def store(assoc: Association, path: Path) -> int:
    return int(assoc.send_c_store(dcmread(path)).Status)


def client_tls(ca: CertAuthority, *, cert=None, version: ssl.TLSVersion | None = None
               ) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca.cert))
    if version is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


# ---------------------------------------------------------------- association
def test_calling_ae_not_allowed_is_rejected_1_1_3_and_audited(start, forged_issuer) -> None:
    scp_ = start(dimse_allowed_aes="FRIEND", **issuer_settings(forged_issuer, auth_mode="public-read"))
    refused = associate(scp_.port, calling="STRANGER")
    assert rejection(refused) == (1, 1, 3)
    assert rejection(associate(scp_.port, calling="FRIEND", called="NOTUS")) == (1, 1, 7)
    friend = associate(scp_.port, calling="FRIEND")
    assert friend.is_established
    friend.release()
    alerts = [e for e in scp_.audit() if e["type"]["code"] == "110113"]
    assert len(alerts) == 2 and {e["outcome"] for e in alerts} == {"4"}
    assert any(a.get("altId") == "AETITLES=STRANGER" for e in alerts for a in e["agent"])


def test_peer_hosts_tie_an_ae_title_to_its_address(start) -> None:
    scp_ = start(dimse_peer_hosts="MODALITY@10.9.9.9, 127.0.0.0/8")
    assert rejection(associate(scp_.port, calling="MODALITY")) == (1, 1, 3)
    other = associate(scp_.port, calling="VIEWER")  # from 127.0.0.1: in the open list
    assert other.is_established
    other.release()
    scp2 = start(dimse_peer_hosts="10.0.0.0/8")
    assert rejection(associate(scp2.port, calling="VIEWER")) == (1, 1, 3)


def test_identity_required_rejects_an_association_without_one_1_1_1(start, forged_issuer) -> None:
    scp_ = start(dimse_require_identity=True, **issuer_settings(forged_issuer))
    assert rejection(associate(scp_.port)) == (1, 1, 1)
    # types that cannot be verified here count as none
    assert rejection(associate(scp_.port, item=identity(1, b"alice"))) == (1, 1, 1)
    ok = associate(scp_.port, token=forged_issuer.forge.token(SYSTEM))
    assert ok.is_established
    assert find(ok)[0] == 0
    ok.release()
    logins = scp_.audit()
    assert sum(e["type"]["code"] == "110114" and e["outcome"] == "4" for e in logins) == 2


@pytest.mark.parametrize("variant", ["expired", "not_yet_valid", "alg_none", "wrong_audience",
                                     "wrong_issuer", "tampered", "unknown_kid", "id_token",
                                     "hs256_with_public_key"])
def test_bad_jwt_identity_is_rejected_1_1_1_even_when_not_required(start, forged_issuer,
                                                                   variant) -> None:
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="public-read"))
    # tampered: signed with a small scope, the payload then raised to SYSTEM
    bad = getattr(forged_issuer.forge, variant)("user/Observation.rs" if variant == "tampered"
                                                 else SYSTEM)
    assert rejection(associate(scp_.port, token=bad)) == (1, 1, 1)
    anonymous = associate(scp_.port)  # public-read: no identity is fine, bad is not
    assert anonymous.is_established
    anonymous.release()


def test_jwt_identity_gets_the_positive_response_it_asks_for(start, forged_issuer) -> None:
    scp_ = start(dimse_require_identity=True, **issuer_settings(forged_issuer))
    token = forged_issuer.forge.token(SYSTEM)
    assoc = associate(scp_.port, item=identity(5, token.encode(), response=True))
    assert assoc.is_established
    answers = [i for i in assoc.acceptor.user_information
               if isinstance(i, UserIdentityNegotiation)]
    assert len(answers) == 1 and answers[0].server_response == b""
    assoc.release()


def test_username_and_token_only_over_tls(start, forged_issuer, pki) -> None:
    ca, _, _ = pki
    scp_ = start(tls=True, dimse_require_identity=True, **issuer_settings(forged_issuer))
    token = forged_issuer.forge.token(SYSTEM, sub="alice")
    item = identity(2, b"alice", token.encode())
    assert rejection(associate(scp_.port, item=item)) == (1, 1, 1)      # in clear: refused
    secure = associate(scp_.tls_port, item=identity(2, b"alice", token.encode()),
                       tls=client_tls(ca))
    assert secure.is_established
    assert find(secure)[0] == 0
    secure.release()
    wrong_user = associate(scp_.tls_port, item=identity(2, b"mallory", token.encode()),
                           tls=client_tls(ca))
    assert rejection(wrong_user) == (1, 1, 1)


def test_required_mode_rejects_anonymous_associations(start, forged_issuer) -> None:
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="required"))
    assert rejection(associate(scp_.port)) == (1, 1, 1)


def test_issuer_unreachable_is_a_transient_rejection_2_1_1(start, forged_issuer) -> None:
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="required"))
    token = forged_issuer.forge.token(SYSTEM)
    forged_issuer.close()                       # no JWKS to check the signature with
    assert rejection(associate(scp_.port, token=token)) == (2, 1, 1)


# ---------------------------------------------------------------- TLS
def test_tls_listener_refuses_tls_1_1_and_serves_tls_1_2(start, pki) -> None:
    ca, _, _ = pki
    scp_ = start(tls=True)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        import socket
        with socket.create_connection(("127.0.0.1", scp_.tls_port), timeout=5) as raw:
            with client_tls(ca, version=ssl.TLSVersion.TLSv1_1).wrap_socket(
                    raw, server_hostname="127.0.0.1") as tls:
                tls.do_handshake()
    assoc = associate(scp_.tls_port, tls=client_tls(ca, version=ssl.TLSVersion.TLSv1_2))
    assert assoc.is_established
    assert find(assoc)[0] == 0
    assoc.release()


def test_tls_with_ca_requires_a_client_certificate(start, pki, tmp_path: Path) -> None:
    ca, _, scu_cert = pki
    scp_ = start(tls=True, dimse_tls_ca=str(ca.cert))
    without = associate(scp_.tls_port, tls=client_tls(ca))
    assert not without.is_established
    stranger = make_ca(tmp_path / "other", "stranger CA").issue(tmp_path / "other", "x",
                                                               client=True)
    assert not associate(scp_.tls_port, tls=client_tls(ca, cert=stranger)).is_established
    mutual = associate(scp_.tls_port, tls=client_tls(ca, cert=scu_cert))
    assert mutual.is_established
    mutual.release()


# ---------------------------------------------------------------- operations
def test_per_ae_permissions_refuse_services_with_0124(start, tmp_path: Path) -> None:
    scp_ = start(dimse_ae_permissions="VIEWER=find+echo,MODALITY=store,*=echo")
    viewer = associate(scp_.port, calling="VIEWER")
    assert int(viewer.send_c_echo().Status) == 0
    assert find(viewer)[0] == 0
    assert get(viewer, scp_.studies["P1"])[0] == 0x0124
    new = make_file(tmp_path / "new.dcm", patient="P1", study="st-P1", series="se-P1", sop="x")
    assert store(viewer, new) == 0x0124
    viewer.release()
    assert scp_.archive.index.counts()["instances"] == 6          # nothing stored
    modality = associate(scp_.port, calling="MODALITY")
    assert int(modality.send_c_echo().Status) == 0x0124           # store only
    assert store(modality, new) == 0
    modality.release()
    other = associate(scp_.port, calling="OTHER")                 # the * entry
    assert int(other.send_c_echo().Status) == 0
    assert find(other)[0] == 0x0124
    other.release()


def test_scope_missing_and_anonymous_writes_are_0124(start, forged_issuer, tmp_path,
                                                    destination) -> None:
    dest, received = destination
    scp_ = start(known_aes=dest, **issuer_settings(forged_issuer, auth_mode="public-read"))
    new = make_file(tmp_path / "new.dcm", patient="P1", study="st-P1", series="se-P1", sop="y")
    anonymous = associate(scp_.port)
    assert find(anonymous)[0] == 0                                # public-read: reads are open
    assert store(anonymous, new) == 0x0124
    anonymous.release()
    reader = associate(scp_.port, token=forged_issuer.forge.token("user/ImagingStudy.rs"))
    assert len(find(reader)[1]) == 3
    assert store(reader, new) == 0x0124
    reader.release()
    observations = associate(scp_.port, token=forged_issuer.forge.token("user/Observation.rs"))
    assert find(observations)[0] == 0x0124
    assert get(observations, scp_.studies["P1"])[0] == 0x0124
    assert move(observations, scp_.studies["P1"], "DEST")[0] == 0x0124
    observations.release()
    assert received == []                                          # nothing was moved
    assert scp_.archive.index.counts()["instances"] == 6
    denials = [e for e in scp_.audit() if e["type"]["code"] == "110113"]
    assert len(denials) == 5 and all(e["outcome"] == "4" for e in denials)


def test_v1_scopes_at_the_scp(start, forged_issuer, tmp_path) -> None:
    """SMART v1 scopes (``read``, ``write``, ``*``) as their v2 letters (App Launch 2.0 3.5)."""
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="required"))
    new = make_file(tmp_path / "v1.dcm", patient="P1", study="st-P1", series="se-P1", sop="v1")
    reader = associate(scp_.port, token=forged_issuer.forge.token("user/*.read"))
    assert find(reader)[0] == 0 and len(find(reader)[1]) == 3
    assert get(reader, scp_.studies["P1"]) == (0, 2)
    assert store(reader, new) == 0x0124                             # read is not write
    reader.release()
    writer = associate(scp_.port, token=forged_issuer.forge.token("user/ImagingStudy.write"))
    assert find(writer)[0] == 0x0124                                # write is not read
    assert store(writer, new) == 0
    writer.release()
    assert scp_.archive.index.counts()["instances"] == 7


def test_c_store_under_overwrite_asks_for_update_as_stow_does(start, forged_issuer,
                                                              tmp_path) -> None:
    """DUPLICATE_POLICY=overwrite: a C-STORE may replace, so it needs `c` and `u`."""
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="required"),
                 duplicate_policy="overwrite")
    new = make_file(tmp_path / "new.dcm", patient="P1", study="st-P1", series="se-P1", sop="z")
    create_only = associate(scp_.port, token=forged_issuer.forge.token("user/ImagingStudy.c"))
    assert store(create_only, new) == 0x0124
    create_only.release()
    assert scp_.archive.index.counts()["instances"] == 6                 # nothing stored
    both = associate(scp_.port, token=forged_issuer.forge.token("user/ImagingStudy.cu"))
    assert store(both, new) == 0
    assert store(both, scp_.files["P2"][0]) == 0                          # a replacement
    both.release()
    assert scp_.archive.index.counts()["instances"] == 7


def test_audit_one_query_event_per_patient_found(start, forged_issuer) -> None:
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="required"))
    assoc = associate(scp_.port, token=forged_issuer.forge.token(SYSTEM, sub="dr-who"))
    status, found = find(assoc)
    assert status == 0 and len(found) == 3
    assert get(assoc, scp_.studies["P2"]) == (0, 2)
    assoc.release()
    queries = [e for e in scp_.audit(agent="dr-who") if e["type"]["code"] == "rest"
               or e["type"]["code"] == "110112"]
    patients = sorted(e["entity"][i]["what"]["reference"] for e in queries
                      for i in range(len(e["entity"]))
                      if e["entity"][i].get("role", {}).get("code") == "1")
    assert patients == ["Patient/P1", "Patient/P2", "Patient/P3"]
    assert len(scp_.audit(patient="P2")) == 2                      # the query and the C-GET
    series = associate(scp_.port, token=forged_issuer.forge.token(SYSTEM, sub="dr-series"))
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.SeriesInstanceUID = ""
    ds.Modality = "CT"
    assert len([s for s, _ in series.send_c_find(ds, STUDY_FIND) if s.Status == 0xFF00]) == 3
    series.release()
    named = sorted(e["entity"][i]["what"]["reference"] for e in scp_.audit(agent="dr-series")
                   for i in range(len(e["entity"]))
                   if e["entity"][i].get("role", {}).get("code") == "1")
    assert named == ["Patient/P1", "Patient/P2", "Patient/P3"]     # at SERIES level too


# ---------------------------------------------------------------- compartments
def test_patient_token_sees_only_its_compartment(start, forged_issuer, tmp_path: Path,
                                                 destination) -> None:
    dest, received = destination
    scp_ = start(known_aes=dest, **issuer_settings(forged_issuer, auth_mode="required"))
    token = forged_issuer.forge.token("patient/*.cruds", patient="P1")
    assoc = associate(scp_.port, token=token)
    status, found = find(assoc)
    assert status == 0 and [str(d.PatientID) for d in found] == ["P1"]
    assert find(assoc, PatientID="P2")[1] == []
    assert get(assoc, scp_.studies["P1"]) == (0, 2)
    unknown = get(assoc, "1.2.3.4.5.6.7.8.9")
    assert get(assoc, scp_.studies["P2"]) == unknown == (0, 0)     # like an unknown UID
    assert move(assoc, scp_.studies["P2"], "DEST") == move(assoc, "1.2.3.4.5.6.7.8.9", "DEST")
    assert move(assoc, scp_.studies["P2"], "DEST") == (0, 0) and received == []
    assert move(assoc, scp_.studies["P1"], "DEST") == (0, 2) and len(received) == 2
    theirs = make_file(tmp_path / "b.dcm", patient="P2", study="st-P2", series="se-P2", sop="z")
    assert store(assoc, theirs) == 0x0124
    mine = make_file(tmp_path / "a.dcm", patient="P1", study="st-P1", series="se-P1", sop="w")
    assert store(assoc, mine) == 0
    assoc.release()
    assert len(list(scp_.archive.instances(UidPath(scp_.studies["P2"])))) == 2  # nothing stored
    assert len(list(scp_.archive.instances(UidPath(scp_.studies["P1"])))) == 3
    # the trail names P1 only: the query, the reads, the store; P2's refused store is an alert
    assert [e["type"]["code"] for e in scp_.audit(patient="P2")] == ["110113"]
    assert len(scp_.audit(patient="P1")) >= 4
    assert len([e for e in scp_.audit() if e["type"]["code"] == "110113"]) == 1


def test_key_rotation_at_the_scp_new_key_without_restart_removed_key_refused(
        start, forged_issuer) -> None:
    """The SCP reads the issuer's JWKS as the HTTP faces do: a key published later is
    accepted without a restart; once the issuer removes a key, an association presenting a
    token it signed is rejected (1, 1, 1) at the next refresh (AUTH_JWKS_MAX_AGE), even a
    token the SCP accepted a moment before."""
    import time

    from tests.support.tokens import SigningKey
    scp_ = start(**issuer_settings(forged_issuer, auth_mode="required", auth_jwks_max_age=0.5,
                                   auth_jwks_refresh_interval=0.2))
    old_key = forged_issuer.forge.key
    old = forged_issuer.forge.token(SYSTEM)
    time.sleep(0.3)  # another test may have just refreshed the shared issuer's keys
    first = associate(scp_.port, token=old)
    assert first.is_established and find(first)[0] == 0
    first.release()
    new_key = SigningKey.generate()
    forged_issuer.publish([old_key, new_key], signer=new_key)
    try:
        time.sleep(0.3)  # the refresh interval: an unknown kid may refetch now
        fresh = associate(scp_.port, token=forged_issuer.forge.token(SYSTEM))
        assert fresh.is_established and find(fresh)[0] == 0  # no restart needed
        fresh.release()
        forged_issuer.publish([new_key])
        time.sleep(0.7)  # past AUTH_JWKS_MAX_AGE: the next check refetches
        assert rejection(associate(scp_.port, token=old)) == (1, 1, 1)
        again = associate(scp_.port, token=forged_issuer.forge.token(SYSTEM))
        assert again.is_established and find(again)[0] == 0
        again.release()
    finally:
        forged_issuer.publish([old_key, new_key], signer=old_key)
