"""DIMSE_AE_COLLECTIONS with DCMTK against `tcia-gateway dimse`, in an archive holding two
collections: an AE limited to one collection finds only its studies (filtered, not failed),
retrieves another collection's study exactly as an unknown one (same status, nothing sent)
and has a C-STORE into another collection refused 0x0124; an AE not listed sees all."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from gateway.archive.local import open_local
from gateway.config import Settings
from gateway.ingest.importer import run_import
from tests.support import dcmtk
from tests.support.dicomfiles import make_file, uid
from tests.support.remote import Scp, start_scp

AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Iterator[Scp]:
    src, data = tmp_path_factory.mktemp("dimse-src"), tmp_path_factory.mktemp("dimse-data")
    for pid, coll, study, n in (("P1", AR, "A", 2), ("P2", RICORD, "C", 1)):
        for i in range(n):
            make_file(src / f"{study}{i}.dcm", patient=pid, study=study, series=f"{study}1",
                      sop=f"{study}1-{i}", InstanceNumber=i + 1, collection=coll,
                      AccessionNumber=f"ACC{study}")
    archive = open_local(Settings().replace(data_dir=data))
    assert run_import(archive, [src], progress=False).new == 3
    archive.close()
    server = start_scp(data, artifacts_dir / "logs", extra_env={
        "GATEWAY_DIMSE_AE_COLLECTIONS": f"ARONLY={AR},BOTH={AR}+{RICORD}"})
    yield server
    server.proc.stop()


def accessions(scp: Scp, calling: str, out: Path) -> list[str]:
    found = dcmtk.findscu("TCIAGW", scp.port, {"QueryRetrieveLevel": "STUDY",
                                               "AccessionNumber": ""}, out, calling=calling)
    assert "Success" in found.final_status
    return sorted(str(ds.AccessionNumber) for ds in found.responses)


def test_cfind_filtered_per_calling_ae(scp: Scp, tmp_path: Path) -> None:
    assert accessions(scp, "ARONLY", tmp_path / "a") == ["ACCA"]
    assert accessions(scp, "BOTH", tmp_path / "b") == ["ACCA", "ACCC"]
    assert accessions(scp, "ANYONE", tmp_path / "c") == ["ACCA", "ACCC"]


def _get_log(scp: Scp, study: str, out: Path) -> tuple[str, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    run = dcmtk.run("getscu", ["-v", "-S", "-od", str(out),
                               *dcmtk.peer_args("TCIAGW", scp.port, "ARONLY"),
                               "-k", "QueryRetrieveLevel=STUDY", "-k",
                               f"StudyInstanceUID={study}"], check=False)
    text = run.stdout + run.stderr
    return re.sub(r"[0-9.]{20,}", "UID", text), sorted(out.glob("*"))


def test_cget_of_another_collection_is_like_unknown(scp: Scp, tmp_path: Path) -> None:
    hidden, hidden_files = _get_log(scp, uid("study", "C"), tmp_path / "h")
    unknown, unknown_files = _get_log(scp, uid("study", "Z"), tmp_path / "u")
    assert hidden_files == unknown_files == []
    assert hidden == unknown and "Completed Suboperations : 0" in hidden, hidden
    _log, own = _get_log(scp, uid("study", "A"), tmp_path / "o")
    assert len(own) == 2


def test_cstore_into_another_collection_refused(scp: Scp, tmp_path: Path) -> None:
    foreign = make_file(tmp_path / "f.dcm", patient="P5", study="F", sop="F-0",
                        collection=RICORD)
    run = dcmtk.run("storescu", ["-v", *dcmtk.peer_args("TCIAGW", scp.port, "ARONLY"),
                                 str(foreign)], check=False)
    assert "Status: 0x124)" in run.stderr  # DCMTK names no 0x0124 text: Refused, Not Authorised
    assert accessions(scp, "BOTH", tmp_path / "x") == ["ACCA", "ACCC"]  # nothing stored
    ours = make_file(tmp_path / "o.dcm", patient="P1", study="G", sop="G-0", collection=AR,
                     AccessionNumber="ACCG")
    (ok,) = dcmtk.storescu("TCIAGW", scp.port, [ours], calling="ARONLY", check=False)
    assert ok.returncode == 0
    assert accessions(scp, "ARONLY", tmp_path / "y") == ["ACCA", "ACCG"]


@pytest.mark.parametrize("bad", ["ARONLY", "ARONLY=", "=COVID-19-AR", "A" * 17 + "=X"])
def test_malformed_map_stops_the_start(bad: str) -> None:
    from gateway.config import SettingsError
    with pytest.raises(SettingsError, match="DIMSE_AE_COLLECTIONS"):
        Settings.load(env={"GATEWAY_DIMSE_AE_COLLECTIONS": bad})
