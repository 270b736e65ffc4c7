"""Access settings in `Settings`: typos stop the start, unsafe combinations stop `serve`."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env, message", [
    ({"GATEWAY_AUTHMODE": "required"}, "GATEWAY_AUTHMODE (did you mean GATEWAY_AUTH_MODE?)"),
    ({"GATEWAY_AUTH_ISUER": "https://x"}, "GATEWAY_AUTH_ISUER (did you mean GATEWAY_AUTH_ISSUER?)"),
    ({"GATEWAY_PUBLIC_ULR": "https://x"}, "did you mean GATEWAY_PUBLIC_URL?"),
    ({"GATEWAY_ZZZZ": "1"}, "unknown setting variable(s): GATEWAY_ZZZZ"),
    ({"GATEWAY_AUTH_MODE": "requried"}, "expected one of off, public-read, required "
                                        "(did you mean 'required'?)"),
    ({"GATEWAY_AUDIT_SYSLOG": "udp://127.0.0.1:514"}, "tcp://HOST:PORT"),
    ({"GATEWAY_AUTH_LEEWAY": "-1"}, "AUTH_LEEWAY"),
])
def test_unknown_variables_and_bad_modes_stop_the_start(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.load(env=env)


def test_access_settings_load_from_the_environment() -> None:
    s = Settings.load(env={"GATEWAY_AUTH_MODE": "public-read", "GATEWAY_AUTH_LEEWAY": "5",
                           "GATEWAY_AUTH_ALLOW_ANONYMOUS_REMOTE": "true",
                           "GATEWAY_CONFIG": "", "GATEWAY_FUZZ_SECONDS": "3"})
    assert (s.auth_mode, s.auth_leeway, s.auth_allow_anonymous_remote) == ("public-read", 5, True)
    assert Settings.load(env={}).auth_mode == "off"


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"}
    return subprocess.run([sys.executable, "-m", "gateway", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_serve_refuses_anonymous_access_on_the_network(tmp_path: Path) -> None:
    out = _serve({"GATEWAY_DATA_DIR": str(tmp_path)}, "serve", "--http", "0.0.0.0:18080")
    assert out.returncode == 2, out.stderr
    assert "AUTH_MODE=off on 0.0.0.0:18080 would let anyone on the network" in out.stderr
    assert "AUTH_ALLOW_ANONYMOUS_REMOTE=true" in out.stderr


def test_serve_refuses_cors_any_origin_with_auth_on(tmp_path: Path) -> None:
    out = _serve({"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_AUTH_MODE": "required",
                  "GATEWAY_AUTH_ISSUER": "https://login.example.org"}, "serve")
    assert out.returncode == 2, out.stderr
    assert "CORS_ORIGINS=* with access control on" in out.stderr


def test_a_typo_stops_serve_naming_the_variable(tmp_path: Path) -> None:
    out = _serve({"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_AUTHMODE": "required"}, "serve")
    assert out.returncode == 2
    assert "GATEWAY_AUTHMODE (did you mean GATEWAY_AUTH_MODE?)" in out.stderr
