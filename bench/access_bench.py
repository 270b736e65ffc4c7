"""What access control costs a request, in process (no HTTP): the per-call time of each step.

    python bench/access_bench.py [--n 2000]

Against the forged loopback issuer (tests/support/forged_issuer.py): bearer extraction,
a first verification (RS256 signature + claims, JWKS already cached), a cached verification
(the per-process token cache: what every request after the first pays), a policy decision,
the audit encoders (FHIR AuditEvent dicts, A.5 XML) for a query touching 3 patients, and
the audit store: one transaction per request versus the trail's batched writer thread.
Prints a table and one JSON line. Microseconds on a shared machine: indicative only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.access import JwksCache, Policy, TokenValidator
from gateway.access.bearer import bearer_token
from gateway.access.scopes import DicomOp
from gateway.archive.local.index import make_engine
from gateway.audit.dicom import to_dicom_xml
from gateway.audit.events import Action, Actor, AuditRecord, Face
from gateway.audit.fhir import to_fhir
from gateway.audit.store import AuditStore
from gateway.audit.trail import AuditTrail
from tests.support.forged_issuer import ForgedIssuer

SCOPE = "patient/ImagingStudy.rs patient/Observation.rs"


def per_call_us(fn, n: int) -> float:
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with ForgedIssuer("http://bench.test/") as issuer, tempfile.TemporaryDirectory() as tmp:
        store = AuditStore(make_engine(f"sqlite:///{tmp}/index.sqlite"))
        store.create()
        validator = TokenValidator(issuer.url, "http://bench.test/", jwks=JwksCache(issuer.url))
        policy = Policy("required", validator)
        token = issuer.forge.token(SCOPE, patient="P1")
        header = f"Bearer {token}"
        validator.principal(token)  # discovery + JWKS fetched once
        tokens = iter([issuer.forge.token(SCOPE, patient="P1") for _ in range(args.n * 5 // 10)])
        principal = validator.principal(token)
        record = AuditRecord(Action.QUERY, Face.DICOMWEB, who=Actor.of(principal, address="10.0.0.1"),
                             request_id="r", query=b"PatientID=X&limit=101",
                             patients=("P1", "P2", "P3"))
        rows = {
            "bearer extraction": per_call_us(lambda: bearer_token(header, {"limit": "1"}), args.n),
            "first verification (RS256)": per_call_us(lambda: validator.principal(next(tokens)),
                                                      args.n // 10),
            "cached verification": per_call_us(lambda: validator.principal(token), args.n),
            "policy decision (QIDO)": per_call_us(
                lambda: policy.authorize_dicom(principal, DicomOp.QIDO), args.n),
            "FHIR AuditEvents (3 patients)": per_call_us(lambda: to_fhir(record), args.n // 10),
            "A.5 XML (1 query message)": per_call_us(lambda: to_dicom_xml(record), args.n // 10),
            "store 3 AuditEvents, own transaction (SQLite)": per_call_us(
                lambda: store.append(to_fhir(record)), args.n // 20),
        }
        trail = AuditTrail(store)
        rows["AuditTrail.record (the request's share: queue)"] = per_call_us(
            lambda: trail.record(record), args.n // 10)
        trail.flush(600)
        start = time.perf_counter()
        for _ in range(args.n):
            trail.record(record)
        trail.flush(600)
        rows["AuditTrail worker: encode + batched store (per AuditEvent)"] = (
            (time.perf_counter() - start) / (3 * args.n) * 1e6)
    width = max(map(len, rows))
    print(f"{'step':<{width}}  µs per call")
    for name, us in rows.items():
        print(f"{name:<{width}}  {us:10.1f}")
    print(json.dumps({"bench": "access", "us_per_call": {k: round(v, 2) for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
