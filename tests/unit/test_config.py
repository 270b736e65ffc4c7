"""Settings: defaults < TOML file < GATEWAY_* env, typed, validated, documented."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.config import Settings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_match_the_interface_contract() -> None:
    s = Settings.load(env={})
    assert s.data_dir == Path("./var")
    assert s.index_url == f"sqlite:///{Path('./var').resolve() / 'index.sqlite'}"
    assert (s.http_bind, s.public_url, s.ae_title, s.dimse_bind) == (
        "127.0.0.1:8080", "http://127.0.0.1:8080", "TCIAGW", "127.0.0.1:11112")
    assert (s.pacs, s.pacs_retrieve, s.known_aes, s.cors_origins) == ("", "c-get", "", "*")
    assert s.max_upload_bytes == 2 * 1024**3


def test_env_overrides_file_overrides_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\nAE_TITLE = "FROMFILE"\nmax_upload_bytes = 1000\n'
                   'trust_proxy = true\n')
    s = Settings.load(cfg, env={"GATEWAY_AE_TITLE": "FROMENV", "GATEWAY_WORKERS": "3"})
    assert (s.ae_title, s.max_upload_bytes, s.trust_proxy, s.workers) == ("FROMENV", 1000, True, 3)
    s = Settings.load(env={"GATEWAY_CONFIG": str(cfg)})
    assert s.ae_title == "FROMFILE"


@pytest.mark.parametrize("env, message", [
    ({"GATEWAY_WORKERS": "many"}, "GATEWAY_WORKERS"),
    ({"GATEWAY_TRUST_PROXY": "maybe"}, "not a boolean"),
    ({"GATEWAY_PACS_RETRIEVE": "c-fetch"}, "expected one of c-get, c-move"),
    ({"GATEWAY_PACS": "ORTHANC:4242"}, "AET@HOST:PORT"),
    ({"GATEWAY_HTTP_BIND": "8080"}, "HOST:PORT"),
    ({"GATEWAY_AE_TITLE": "A" * 17}, "1 to 16"),
])
def test_bad_values_are_refused_with_the_setting_named(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.load(env=env)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("HTTP_PORT = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load(cfg, env={})


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    for f in dataclasses.fields(Settings):
        assert f"`{f.name.upper()}`" in text, f"README settings table lacks {f.name.upper()}"
        assert f.metadata["doc"], f.name


def test_public_url_follows_http_bind_unless_set() -> None:
    assert Settings.load(env={"GATEWAY_HTTP_BIND": "127.0.0.1:9999"}).public_url == "http://127.0.0.1:9999"
    s = Settings.load(env={"GATEWAY_HTTP_BIND": "127.0.0.1:9999",
                           "GATEWAY_PUBLIC_URL": "https://img.example.org"})
    assert s.public_url == "https://img.example.org"
    assert Settings().replace(http_bind="127.0.0.1:7000").public_url == "http://127.0.0.1:7000"


def test_children_get_every_setting_through_the_environment(tmp_path: Path) -> None:
    """``to_env`` is what serve/demo hand to gunicorn and the SCP: loading it back gives the
    same settings, field by field, whatever the defaults (every field is changed here)."""
    changed = {}
    for f in dataclasses.fields(Settings):
        value = getattr(Settings(), f.name)
        if f.metadata["choices"]:
            value = f.metadata["choices"][-1]
        elif isinstance(value, bool):
            value = not value
        elif isinstance(value, (int, float)):
            value = value + 3
        elif isinstance(value, Path):
            value = tmp_path / "data"
        elif f.name.endswith("_bind"):
            value = "127.0.0.1:9" + str(len(changed)).zfill(3)
        elif f.name in ("pacs", "known_aes"):
            value = "PEER@127.0.0.1:104"
        elif f.name == "ae_title":
            value = "OTHER"
        elif f.name == "dimse_ae_collections":
            value = "PEER=COVID-19-AR+MIDRC-RICORD-1C"
        else:
            value = "x" + str(value)
        changed[f.name] = value
    settings = Settings().replace(**changed)
    env = settings.to_env()
    assert set(env) == {"GATEWAY_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert Settings.load(env=env) == settings


def test_http_bind_moves_the_public_links_unless_public_url_is_set() -> None:
    moved = Settings.load(env={}).replace(http_bind="127.0.0.1:9000")
    assert moved.public_url == "http://127.0.0.1:9000"
    assert Settings.load(env=moved.to_env()).public_url == "http://127.0.0.1:9000"
    pinned = Settings.load(env={"GATEWAY_PUBLIC_URL": "https://pacs.example.org"})
    assert pinned.replace(http_bind="127.0.0.1:9000").public_url == "https://pacs.example.org"
