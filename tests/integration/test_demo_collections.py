"""``demo --collections COVID-19-AR,MIDRC-RICORD-1C`` on an empty data dir (small twins):
both collections synthesised and imported side by side, each served at its own root, listed
by GET /collections, in FHIR as ResearchStudy with their subjects, and offered by the viewer
as one data source each besides the whole archive."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import requests

from tests.support.ohif_fixture import write_mini_build
from tests.support.procs import Proc, free_port, http_ok, wait_until

AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"


def test_demo_serves_two_collections_side_by_side(tmp_path: Path, artifacts_dir: Path) -> None:
    http, dimse = free_port(), free_port()
    data = tmp_path / "data"
    write_mini_build(data / "viewer")  # app-config.js is served once a build is installed
    proc = Proc([sys.executable, "-m", "gateway", "demo", "--data", str(data),
                 "--collections", f"{AR},{RICORD}", "--patients", "3", "--xr-size", "64",
                 "--ct-size", "32"], artifacts_dir / "logs" / "demo-collections.log",
                env={"GATEWAY_HTTP_BIND": f"127.0.0.1:{http}",
                     "GATEWAY_DIMSE_BIND": f"127.0.0.1:{dimse}", "GATEWAY_WORKERS": "1",
                     "GATEWAY_LOG_LEVEL": "WARNING"}, cwd=tmp_path).start()
    base = f"http://127.0.0.1:{http}"
    try:
        wait_until(lambda: http_ok(base + "/healthz"), timeout=240, what="demo", proc=proc,
                   interval=0.5)
        listing = {c["name"]: c for c in requests.get(base + "/collections", timeout=30).json()}
        assert set(listing) == {AR, RICORD}
        assert listing[AR]["counts"]["patients"] == listing[RICORD]["counts"]["patients"] == 3
        everything = requests.get(base + "/dicomweb/studies", timeout=30).json()
        per_root = {}
        for name in (AR, RICORD):
            studies = requests.get(f"{base}/collections/{name}/dicomweb/studies", timeout=30).json()
            per_root[name] = {s["0020000D"]["Value"][0] for s in studies}
            assert len(studies) == listing[name]["counts"]["studies"]
            assert all(s["00100020"]["Value"][0].startswith(name) for s in studies), name
        assert per_root[AR].isdisjoint(per_root[RICORD])
        assert per_root[AR] | per_root[RICORD] == {s["0020000D"]["Value"][0] for s in everything}
        for name in (AR, RICORD):
            has = requests.get(f"{base}/fhir/Patient?_has:ResearchSubject:individual:study="
                               f"ResearchStudy/{name}&_summary=count", timeout=30).json()
            assert has["total"] == 3, name
        config = requests.get(base + "/viewer/app-config.js", timeout=30).text
        sources = re.findall(r'"sourceName": "([^"]+)"', config)
        assert sources == ["tcia-gateway", AR, RICORD]
        assert f'"qidoRoot": "/collections/{RICORD}/dicomweb"' in config
    finally:
        proc.stop()
