"""schemathesis against ``/openapi.json`` on the real gateway (gunicorn, small cohort).

Every operation of the document gets generated requests (bounded: GATEWAY_SCHEMATHESIS_EXAMPLES
per operation); each answer must not be a server error and must match the document: a
documented status, a documented Content-Type, and a body that validates against its
schema. Path parameters are the cohort's real UIDs most of the time (random UIDs only
reach 404s), and STOW bodies are real multipart messages: random bytes, a new valid
instance, or one already stored.
"""
from __future__ import annotations

import collections
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from gateway.dicomweb.multipart import encode  # noqa: E402
from tests.fuzz import make_corpus  # noqa: E402
from tests.support.procs import GatewayServer, start_gateway  # noqa: E402

EXAMPLES = int(os.environ.get("GATEWAY_SCHEMATHESIS_EXAMPLES", "12"))
CHECKS = [checks.not_a_server_error, checks.response_schema_conformance,
          checks.status_code_conformance, checks.content_type_conformance]
BOUNDARY = "schemathesis-8f1c2e"
SEED_STUDY = make_corpus._base(0).StudyInstanceUID
schemathesis.serializer.alias("multipart/related", "application/octet-stream")  # bytes as they are


STATUSES: collections.Counter = collections.Counter()  # (operation, status) seen, for the log


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, loaded_data_dir: Path,
               artifacts_dir: Path) -> Iterator[GatewayServer]:
    """A gateway of its own on a copy of the cohort: generated STOWs may store."""
    data = tmp_path_factory.mktemp("schemathesis") / "data"
    shutil.copytree(loaded_data_dir, data)
    server = start_gateway(data, artifacts_dir / "logs")
    yield server
    server.stop()
    lines = [f"{op} {status}: {n}" for (op, status), n in sorted(STATUSES.items(), key=str)]
    (artifacts_dir / "schemathesis-statuses.txt").write_text("\n".join(lines) + "\n")


def _pick(values: list, key: object) -> object:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return values[digest[0] % len(values)], digest[1]


@pytest.fixture(scope="module")
def api_schema(api_server: GatewayServer):
    found = requests.get(api_server.url + "/dicomweb/instances", timeout=30).json()
    uids = [(m["0020000D"]["Value"][0], m["0020000E"]["Value"][0], m["00080018"]["Value"][0])
            for m in found]
    assert uids, "the cohort has no instances"
    schema = schemathesis.openapi.from_url(api_server.url + "/openapi.json")

    @schema.hook
    def map_path_parameters(context, path_parameters: dict | None) -> dict | None:
        if not path_parameters:
            return path_parameters
        (study, series, sop), coin = _pick(uids, sorted(path_parameters.items()))
        if coin % 4 == 0:
            return path_parameters  # as generated: a UID the archive does not have
        real = {"study": study, "series": series, "instance": sop, "tag": "7FE00010",
                "frame": 1, "frame_list": "1"}
        return {k: real.get(k, v) for k, v in path_parameters.items()}

    @schema.hook
    def map_query(context, query: dict | None) -> dict | None:
        if context.operation.path != "/wado" or not query:
            return query
        (study, series, sop), coin = _pick(uids, sorted(query.items(), key=str))
        if coin % 4:
            query = {**query, "studyUID": study, "seriesUID": series, "objectUID": sop}
        return query

    @schema.hook
    def map_case(context, case):
        if context.operation.method.upper() == "POST" and case.method.upper() == "POST":
            case.body = _stow_body(case.body)
            if case.path_parameters and hashlib.sha256(case.body).digest()[0] % 2:
                case.path_parameters = {**case.path_parameters, "study": SEED_STUDY}  # theirs
            case.headers = {**(case.headers or {}), "Content-Type":
                            f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
        return case

    return schema


def _stow_body(generated: object) -> bytes:
    """Random bytes, a new valid instance, or the same instance again, as one part."""
    raw = generated if isinstance(generated, bytes) else repr(generated).encode()
    kind = hashlib.sha256(raw).digest()[0] % 3
    if kind:
        n = 900 + (len(raw) if kind == 1 else 0)
        raw = make_corpus.part10(make_corpus._base(n), "1.2.840.10008.1.2.1")
    return encode([("application/dicom", raw)], BOUNDARY)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_openapi(case) -> None:
    response = case.call_and_validate(checks=CHECKS, timeout=60)
    STATUSES[(case.operation.label, response.status_code)] += 1
