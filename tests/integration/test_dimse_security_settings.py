"""What `tcia-gateway dimse` refuses to start with, and how DIMSE_PEER_HOSTS reads (pure)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.access.dimse import parse_peer_hosts
from gateway.config import Settings, SettingsError
from gateway.scp.security import dimse_problems


def test_peer_hosts_tie_ae_titles_to_networks() -> None:
    hosts = parse_peer_hosts("10.0.0.0/8, MODALITY@192.168.1.7, MODALITY@[::1]")
    assert hosts.admits("ANY", "10.2.3.4") and not hosts.admits("ANY", "192.168.1.7")
    assert hosts.admits("MODALITY", "192.168.1.7") and hosts.admits("MODALITY", "::1")
    assert not hosts.admits("MODALITY", "10.2.3.4")      # its own entries replace the list
    only_ae = parse_peer_hosts("PACS@10.1.1.1")
    assert only_ae.admits("VIEWER", "172.16.0.1") and not only_ae.admits("PACS", "10.1.1.2")
    assert parse_peer_hosts("").admits("X", "203.0.113.9")
    for bad in ("pacs.example.org", "TOO-LONG-AE-TITLE-X@10.0.0.1", "A@10.0.0.300"):
        with pytest.raises(ValueError, match="DIMSE_PEER_HOSTS"):
            parse_peer_hosts(bad)


def test_dimse_refuses_open_remote_binds(tmp_path: Path) -> None:
    base = Settings().replace(data_dir=tmp_path)
    assert dimse_problems(base) == []
    remote = base.replace(dimse_bind="0.0.0.0:11112")
    assert any("AUTH_MODE=off" in p for p in dimse_problems(remote))
    assert dimse_problems(remote.replace(auth_allow_anonymous_remote=True)) == []
    assert any("AUTH_MODE=off" in p for p in dimse_problems(base, "0.0.0.0:104"))
    tls = base.replace(dimse_tls_bind="0.0.0.0:2762", dimse_tls_cert="c", dimse_tls_key="k")
    assert any("0.0.0.0:2762" in p for p in dimse_problems(tls))
    assert dimse_problems(tls.replace(dimse_tls_ca="ca.pem")) == []  # client certificates


def test_dimse_names_bad_access_settings(tmp_path: Path) -> None:
    base = Settings().replace(data_dir=tmp_path)
    typo = dimse_problems(base.replace(dimse_ae_permissions="VIEWER=fnd"))
    assert typo and "unknown service 'fnd'" in typo[0] and "find" in typo[0]
    assert dimse_problems(base.replace(dimse_peer_hosts="nowhere"))
    assert any("DIMSE_REQUIRE_IDENTITY needs AUTH_ISSUER" in p
               for p in dimse_problems(base.replace(dimse_require_identity=True)))
    with pytest.raises(SettingsError, match="DIMSE_TLS_CERT"):
        base.replace(dimse_tls_bind="127.0.0.1:2762")
