"""Searches are planned once and their results kept per worker: what a client sees must not
change because of that (fresh Bundle ids, paging, errors), and a re-import (another process)
must show at once in the next search."""
from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
import requests

from gateway import create_app
from gateway.archive.local import open_local
from gateway.ingest.importer import run_import
from gateway.ingest.clinical import import_clinical
from gateway.config import Settings
from gateway.fhir import bundle
from gateway.clinical import resources
from gateway.clinical.generation import Generation
from gateway.fhir.results import ResultCache
from tests.support.clinical import COMORBIDITY_FLAGS, read_rows, write_rows
from tests.support.procs import start_gateway


def get(server, path: str) -> requests.Response:
    return requests.get(f"{server.url}/fhir/{path}", timeout=30)


def matches(bundle_json: dict) -> list[tuple[str, str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"], e["resource"]["meta"]["versionId"])
            for e in bundle_json.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture
def writable_server(data_copy: Path, artifacts_dir: Path):
    server = start_gateway(data_copy, artifacts_dir / "logs", workers=1)
    yield server
    server.stop()


def test_repeated_search_same_content_new_bundle_id(gateway_server):
    pid = get(gateway_server, "Patient?_count=1").json()["entry"][0]["resource"]["id"]
    answers = [get(gateway_server, f"Observation?patient={pid}&category=laboratory").json()
               for _ in range(4)]
    ids = [a.pop("id") for a in answers]
    assert len(set(ids)) == 4 and all(uuid.UUID(i).version == 4 for i in ids)
    assert all(a == answers[0] for a in answers) and answers[0]["total"] >= 1
    resources.validate({**answers[0], "id": ids[0]})


def test_repeated_paging_and_counts_stay_right(gateway_server):
    total = get(gateway_server, "Observation?_summary=count").json()["total"]
    for _ in range(2):
        past = get(gateway_server, f"Observation?_count=5&_offset={total + 10}").json()
        assert past["total"] == total and "entry" not in past
        assert [l["relation"] for l in past["link"]] == ["self", "previous"]
        last = get(gateway_server, f"Observation?_count=5&_offset={total - 1}").json()
        assert last["total"] == total and len(last["entry"]) == 1
        assert "next" not in [l["relation"] for l in last["link"]]
        none = get(gateway_server, "Observation?_count=2&_total=none").json()
        assert "total" not in none and "next" in [l["relation"] for l in none["link"]]


def test_a_long_search_answers_every_time(gateway_server):
    pid = get(gateway_server, "Patient?_count=1").json()["entry"][0]["resource"]["id"]
    others = ",".join(f"COVID-19-AR-{n:08d}" for n in range(100))  # not kept: planned each time
    for _ in range(2):
        found = get(gateway_server, f"Patient?_id={others},{pid}").json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == pid


def test_encoded_parameter_names_count(gateway_server):
    """Plans are looked up by the raw query string: encoded forms still mean the same."""
    pid = get(gateway_server, "Patient?_count=1").json()["entry"][0]["resource"]["id"]
    plain = get(gateway_server, f"Patient?_id={pid}")
    encoded = get(gateway_server, f"Patient?%5Fid={pid.replace('-', '%2D')}")
    assert plain.json()["entry"] == encoded.json()["entry"]
    assert b"\n  " not in plain.content
    assert b"\n  " in get(gateway_server, f"Patient?_id={pid}&%5Fpretty=true").content
    assert get(gateway_server, f"Patient?_id={pid}&%5Fformat=xml").status_code == 406
    assert get(gateway_server, f"Patient?_id={pid}&_format=xml").status_code == 406


def test_a_bad_search_fails_every_time(gateway_server):
    for _ in range(3):
        response = get(gateway_server, "Observation?date=yesterday")
        assert response.status_code == 400 and "date" in response.text


def test_search_follows_a_reimport_from_another_process(writable_server, data_copy, small_cohort,
                                                        tmp_path):
    rows = read_rows(small_cohort.clinical_csv)
    flags = COMORBIDITY_FLAGS
    row = next((r for r in rows if any(r[c] == "Y" for c in flags)), rows[0])
    pid, flagged = row["patient_id"], next((c for c in flags if row[c] == "Y"), None)
    bmi = f"Observation?_id={pid}-bmi"
    conditions = f"Condition?patient={pid}"
    before = [get(writable_server, q).json() for q in (bmi, conditions, bmi, conditions)][-2:]
    assert matches(before[0]) == [("Observation", f"{pid}-bmi", "1")]

    archive = open_local(Settings().replace(data_dir=data_copy))
    import_clinical(archive, small_cohort.xlsx)  # unchanged: same answers
    assert [matches(get(writable_server, q).json()) for q in (bmi, conditions)] == \
        [matches(b) for b in before]

    row["latest_bmi"] = "44.4"
    if flagged:
        row[flagged] = "N"
    import_clinical(archive, write_rows(rows, tmp_path / "clinical.csv"))
    after = get(writable_server, bmi).json()
    assert matches(after) == [("Observation", f"{pid}-bmi", "2")]
    assert after["entry"][0]["resource"]["valueQuantity"]["value"] == 44.4
    if flagged:
        left = get(writable_server, conditions).json()
        assert left["total"] == before[1]["total"] - 1


def test_generation_token_changes_for_every_reader(tmp_path: Path):
    path = tmp_path / "index.sqlite-fhir-generation"
    reader, writer = Generation(path), Generation(path)
    first = reader.token()
    assert first is not None and reader.token() == first
    writer.bump()
    assert reader.token() != first


def test_generation_off_where_the_file_cannot_be(tmp_path: Path):
    assert Generation(tmp_path / "missing-dir" / "x-fhir-generation").token() is None
    assert ResultCache(None).token() is None


def test_result_cache_is_bounded_and_checks_the_token():
    cache = ResultCache(None, max_bytes=100, max_entries=3, max_entry_bytes=60)
    cache.put("a", b"t1", b"x" * 50)
    assert cache.get("a", b"t1") == b"x" * 50 and cache.get("a", b"t2") is None
    cache.put("big", b"t1", b"y" * 61)
    assert cache.get("big", b"t1") is None
    cache.put("b", b"t1", b"z" * 60)  # 110 bytes would be too many: "a" goes
    assert cache.get("a", b"t1") is None and cache.get("b", b"t1") == b"z" * 60
    for key in ("c", "d", "e"):
        cache.put(key, b"t1", b"w")
    assert [cache.get(k, b"t1") for k in ("b", "c", "d", "e")] == [None, b"w", b"w", b"w"]


def test_bundle_bytes_are_what_orjson_writes():
    links = [("self", "http://h/fhir/Patient?_id=a%7Cb"), ("next", "http://h/fhir/Patient?_offset=2")]
    raw = bundle.searchset([b'{"resource":{"resourceType":"Patient","id":"p"}}'], total=3, links=links)
    parsed = orjson.loads(raw)
    assert raw == orjson.dumps({"resourceType": "Bundle", "id": parsed["id"], "type": "searchset",
                                "total": 3, "link": [{"relation": r, "url": u} for r, u in links],
                                "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}]})
    empty = orjson.loads(bundle.searchset([], total=None, links=links[:1]))
    assert "entry" not in empty and "total" not in empty


def test_search_on_postgresql(postgres, small_cohort, tmp_path: Path):
    """The search SQL runs on the driver's cursor: the same answers on PostgreSQL (no cache)."""
    name = "f" + uuid.uuid4().hex[:12]
    settings = Settings().replace(data_dir=tmp_path / "data",
                                  database_url=postgres.create_database(name))
    archive = open_local(settings)
    run_import(archive, [small_cohort.root], workers=1, progress=False)
    import_clinical(archive, small_cohort.xlsx)
    client = create_app(settings, archive=archive).test_client()
    patients = client.get("/fhir/Patient?_count=100").get_json()
    pid = patients["entry"][0]["resource"]["id"]
    assert patients["total"] == 6
    for _ in range(2):
        labs = client.get(f"/fhir/Observation?patient={pid}&category=laboratory").get_json()
        assert labs["total"] >= 1 and all(e["resource"]["subject"]["reference"] == f"Patient/{pid}"
                                          for e in labs["entry"])
        one = client.get(f"/fhir/Patient?_id={pid}").get_json()
        assert [e["resource"]["id"] for e in one["entry"]] == [pid]
        page = client.get("/fhir/Observation?_count=3&_offset=3").get_json()
        assert len(page["entry"]) == 3 and page["total"] > 6


def test_concurrent_searches_answer_right(loaded_data_dir: Path):
    """Threads share the search connections (and the caches) of one worker."""
    from concurrent.futures import ThreadPoolExecutor
    app = create_app(Settings().replace(data_dir=loaded_data_dir))
    client = app.test_client()
    pids = [e["resource"]["id"] for e in client.get("/fhir/Patient?_count=100").get_json()["entry"]]
    queries = [(pid, f"/fhir/{q}") for pid in pids for q in (
        f"Patient?_id={pid}", f"Observation?patient={pid}&category=laboratory",
        f"Condition?patient={pid}&_count={len(pid) % 3 + 1}")]

    def subjects(item: tuple[str, str]) -> set[str]:
        found = app.test_client().get(item[1]).get_json()
        return {e["resource"].get("subject", {"reference": f"Patient/{e['resource']['id']}"})["reference"]
                for e in found.get("entry", [])}

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(subjects, queries * 5))
    for (pid, query), answer in zip(queries * 5, answers):
        assert answer == {f"Patient/{pid}"} if "Patient?" in query else answer <= {f"Patient/{pid}"}
    assert sum(len(a) for a in answers) > len(answers) * 2 // 3
