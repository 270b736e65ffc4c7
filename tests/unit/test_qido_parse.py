"""QIDO-RS query strings as OHIF and dicomweb-client send them → archive queries
(PS3.18 10.6.1.2); bad parameters fail with their name in the message."""
from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from gateway.archive import InvalidQuery, Level, UidPath
from gateway.dicomweb import qido


def q(text: str, level: Level = Level.STUDY, where: UidPath = qido.ANYWHERE):
    return qido.parse(level, parse_qsl(text, keep_blank_values=True), where)


def test_ohif_study_list_query() -> None:
    query = q("PatientName=*doe*&limit=101&offset=0&fuzzymatching=false"
              "&includefield=00081030%2C00080060&StudyDate=20200101-20201231")
    assert query.filters == {"PatientName": "*doe*", "StudyDate": "20200101-20201231"}
    assert query.includefields == {"00081030", "00080060"}
    assert (query.limit, query.offset, query.fuzzy, query.include_all) == (101, 0, False, False)


def test_repeated_includefield_and_all() -> None:
    query = q("includefield=StudyDescription&includefield=00080090&includefield=all")
    assert query.includefields == {"StudyDescription", "00080090"} and query.include_all


def test_tags_become_keywords_and_uid_lists_use_backslashes() -> None:
    query = q("00100020=COVID-19-AR-1*&StudyInstanceUID=1.2.3,1.2.4&ModalitiesInStudy=CT,DX")
    assert query.filters == {"PatientID": "COVID-19-AR-1*", "StudyInstanceUID": "1.2.3\\1.2.4",
                             "ModalitiesInStudy": "CT\\DX"}


def test_repeated_uid_parameters_are_a_list() -> None:
    assert q("SOPInstanceUID=1.2&SOPInstanceUID=1.3", Level.INSTANCE).filters == {
        "SOPInstanceUID": "1.2\\1.3"}


def test_path_uids_scope_the_query() -> None:
    query = q("SeriesNumber=2", Level.INSTANCE, UidPath("1.2.3", "1.2.3.4"))
    assert query.filters == {"SeriesNumber": "2", "StudyInstanceUID": "1.2.3",
                             "SeriesInstanceUID": "1.2.3.4"}


def test_empty_value_asks_for_the_attribute() -> None:
    assert q("PatientBirthDate=").filters == {"PatientBirthDate": ""}


def test_limit_defaults_to_and_is_capped_by_the_server_maximum() -> None:
    assert q("").limit == qido.MAX_RESULTS
    assert q(f"limit={qido.MAX_RESULTS * 10}").limit == qido.MAX_RESULTS
    assert q("fuzzymatching=TRUE").fuzzy


@pytest.mark.parametrize("text, name", [
    ("limit=-1", "limit"), ("limit=ten", "limit"), ("offset=1.5", "offset"),
    ("fuzzymatching=yes", "fuzzymatching"), ("limit=1&limit=2", "limit"),
    ("NotAnAttribute=1", "NotAnAttribute"), ("_=1699999", "_"),
    ("includefield=Bogus", "Bogus"), ("PatientName=a&PatientName=b", "PatientName"),
    ("ReferencedSeriesSequence.SeriesInstanceUID=1.2",
     "ReferencedSeriesSequence.SeriesInstanceUID"),
])
def test_bad_parameters_are_named(text: str, name: str) -> None:
    with pytest.raises(InvalidQuery) as err:
        q(text)
    assert err.value.attribute == name and name in err.value.message
