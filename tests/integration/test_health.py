"""Liveness and readiness as an orchestrator sees them, over real HTTP."""
from __future__ import annotations

from pathlib import Path

import requests

from tests.support.procs import free_port, start_gateway


def test_healthz_and_readyz(gateway_server) -> None:
    assert requests.get(gateway_server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    r = requests.get(gateway_server.url + "/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_is_503_while_the_index_database_is_unreachable(tmp_path: Path, artifacts_dir: Path) -> None:
    url = f"postgresql://gateway@127.0.0.1:{free_port()}/gateway"  # nothing listens there
    server = start_gateway(tmp_path / "data", artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_DATABASE_URL": url})
    try:
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        r = requests.get(server.url + "/readyz", timeout=10)
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable",
                            "reason": "index database unreachable: OperationalError"}
    finally:
        server.stop()
