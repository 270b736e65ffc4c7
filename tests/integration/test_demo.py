"""The README's demo command on an empty data dir: serves within 3 minutes, 105 patients."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.procs import Proc, free_port, http_ok, wait_until


@pytest.mark.slow
def test_demo_serves_the_full_cohort(tmp_path: Path, artifacts_dir: Path) -> None:
    http, dimse = free_port(), free_port()
    proc = Proc([sys.executable, "-m", "gateway", "demo"], artifacts_dir / "logs" / "demo.log",
                env={"GATEWAY_HTTP_BIND": f"127.0.0.1:{http}",
                     "GATEWAY_DIMSE_BIND": f"127.0.0.1:{dimse}",
                     "GATEWAY_LOG_LEVEL": "WARNING"}, cwd=tmp_path).start()
    try:
        t0 = time.monotonic()
        base = f"http://127.0.0.1:{http}"
        wait_until(lambda: http_ok(base + "/healthz"), timeout=180, what="demo", proc=proc,
                   interval=0.5)
        print(f"demo healthy after {time.monotonic() - t0:.0f} s")
        assert (tmp_path / "var" / "index.sqlite").exists()  # DATA_DIR defaults to ./var
        studies = requests.get(base + "/dicomweb/studies", timeout=30).json()
        patients = {s["00100020"]["Value"][0] for s in studies}
        assert len(patients) == 105 and len(studies) == 256
        assert all(p.startswith("COVID-19-AR-") and len(p) == 20 for p in patients)
        log = proc.log_tail(20000)
        assert f"DICOMweb {base}/dicomweb" in log
    finally:
        proc.stop()
    # a second start on the populated dir serves without synthesising again
    again = Proc([sys.executable, "-m", "gateway", "demo"], artifacts_dir / "logs" / "demo2.log",
                 env={"GATEWAY_HTTP_BIND": f"127.0.0.1:{http}",
                      "GATEWAY_DIMSE_BIND": f"127.0.0.1:{dimse}"}, cwd=tmp_path).start()
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{http}/healthz"), timeout=60, what="demo",
                   proc=again)
        assert "is populated: serving it" in again.log_tail(20000)
    finally:
        again.stop()
