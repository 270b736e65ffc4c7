"""Liveness and readiness as an orchestrator sees them, over real HTTP."""
from __future__ import annotations

import socket
from pathlib import Path

import requests

from tests.support.procs import start_gateway


def test_healthz_and_readyz(gateway_server) -> None:
    assert requests.get(gateway_server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    r = requests.get(gateway_server.url + "/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_is_503_while_the_index_database_is_unreachable(tmp_path: Path, artifacts_dir: Path) -> None:
    # Hold the port bound but not listening, so connections are refused for the whole
    # test and the gateway's own free port can never be the same number.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    url = f"postgresql://gateway@127.0.0.1:{holder.getsockname()[1]}/gateway"
    try:
        server = start_gateway(tmp_path / "data", artifacts_dir / "logs", workers=1,
                               env={"GATEWAY_DATABASE_URL": url, "GATEWAY_LOG_LEVEL": "INFO"})
    except BaseException:
        holder.close()
        raise
    try:
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        r = requests.get(server.url + "/readyz", timeout=10)
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable",
                            "reason": "index database unreachable: OperationalError"}
    finally:
        server.stop()
        holder.close()
