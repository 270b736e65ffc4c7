"""Helpers for the store tests: run ``tcia-gateway check`` on a data dir as an operator would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from tests.support.procs import REPO


def run_check(data_dir: Path, *args: str, env: Mapping[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m gateway check [args]`` on ``data_dir``; output captured as text."""
    full_env = {**os.environ, "GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_LOG_LEVEL": "WARNING",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "gateway", "check", *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
