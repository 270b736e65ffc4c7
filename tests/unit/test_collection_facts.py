"""Collection facts: the copy packaged with the gateway is what idc-index-data's parquet
says for the installed version; citations lose their HTML; FHIR ids stay valid."""
from __future__ import annotations

from pathlib import Path

from gateway.clinical import collections as C


def test_packaged_facts_equal_the_installed_parquet(tmp_path: Path) -> None:
    packaged = Path(C.__file__).with_name(f"collections-idc-{C.idc_version()}.json")
    assert packaged.is_file(), "regenerate with write_facts (docstring) after an idc upgrade"
    assert C.load_facts(tmp_path / "empty") == C._read_parquet()
    assert not (tmp_path / "empty").exists()  # the packaged copy answered: nothing cached
    facts = C.load_facts(tmp_path)
    ar = facts["COVID-19-AR"]
    assert (ar.doi, ar.licence, ar.subjects) == ("10.7937/tcia.2020.py71-5978", "CC BY 4.0", 105)
    assert facts["MIDRC-RICORD-1C"].licence_url == "https://creativecommons.org/licenses/by-nc/4.0/"


def test_citation_is_plain_text() -> None:
    assert C.plain("Desai, S., &amp; Prior, F. (2020). <i>Chest\nImaging</i> [Data set].") == \
        "Desai, S., & Prior, F. (2020). Chest Imaging [Data set]."


def test_fhir_ids() -> None:
    assert C.fhir_id("COVID-19-AR", "COVID-19-AR-16406488") == "COVID-19-AR-COVID-19-AR-16406488"
    odd = C.fhir_id("A collection", "P_1")
    assert odd.startswith("c-") and len(odd) <= 64 and odd == C.fhir_id("A collection", "P_1")
