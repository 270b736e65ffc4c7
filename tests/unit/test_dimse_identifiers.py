"""C-FIND identifiers ↔ archive queries, presentation contexts and status names (pure)."""
from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from gateway.archive.errors import InvalidQuery
from gateway.archive.protocol import Level, Query
from gateway.dimse import contexts as cx
from gateway.dimse.identifiers import answer, find_identifier, query_from_identifier, result_json
from gateway.scp.retrieve import retrieve_paths
from gateway.archive.status import Status, category, describe


def test_query_becomes_identifier_with_matching_and_return_keys() -> None:
    ds = find_identifier(Query(Level.STUDY, {"PatientID": "COVID-19-AR-1*",
                                             "StudyDate": "2020.01.01-20201231",
                                             "Modality": "CT\\DX"},
                               includefields=frozenset({"00081030", "PatientWeight"})))
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientID == "COVID-19-AR-1*"
    assert ds["StudyDate"].value == "20200101-20201231"
    assert list(ds.ModalitiesInStudy) == ["CT", "DX"]  # Modality at study level
    assert "Modality" not in ds
    for keyword in ("StudyInstanceUID", "NumberOfStudyRelatedInstances", "StudyDescription",
                    "PatientWeight"):
        assert keyword in ds and ds[keyword].value in ("", None, [])


def test_instance_level_leaves_out_file_meta_and_lists_uids() -> None:
    ds = find_identifier(Query(Level.INSTANCE, {"SeriesInstanceUID": "1.2.3\\1.2.4"}))
    assert ds.QueryRetrieveLevel == "IMAGE"
    assert list(ds.SeriesInstanceUID) == ["1.2.3", "1.2.4"]
    assert all(int(e.tag) >> 16 != 0x0002 for e in ds)  # TransferSyntaxUID is file meta


def test_fuzzy_names_become_wildcards_and_non_ascii_sets_utf8() -> None:
    ds = find_identifier(Query(Level.STUDY, {"PatientName": "müller jo"}, fuzzy=True))
    assert str(ds.PatientName) == "*müller*jo*"
    assert ds.SpecificCharacterSet == "ISO_IR 192"


def test_unknown_attribute_is_refused() -> None:
    with pytest.raises(InvalidQuery) as err:
        find_identifier(Query(Level.STUDY, {"NoSuchThing": "1"}))
    assert err.value.attribute == "NoSuchThing"


def test_result_keeps_what_the_peer_returned_and_nothing_else() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet, ds.QueryRetrieveLevel, ds.RetrieveAETitle = "ISO_IR 100", "STUDY", "PACS"
    ds.StudyInstanceUID, ds.PatientName, ds.StudyDescription = "1.2.3", "DOE^J", ""
    assert result_json(ds) == {"00081030": {"vr": "LO"},
                               "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^J"}]},
                               "0020000D": {"vr": "UI", "Value": ["1.2.3"]}}


def _identifier(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_incoming_identifier_splits_filters_and_return_keys() -> None:
    query, tags = query_from_identifier(_identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2.3", Modality="CT",
        SeriesDescription="", PatientWeight="70"), "S")
    assert query.level is Level.SERIES
    assert dict(query.filters) == {"StudyInstanceUID": "1.2.3", "Modality": "CT"}
    assert query.includefields == {"SeriesDescription", "PatientWeight"}
    assert tags == [0x00080060, 0x0008103E, 0x00101030, 0x0020000D]


@pytest.mark.parametrize("level, root", [("", "S"), ("BOGUS", "S"), ("PATIENT", "S")])
def test_bad_levels_are_invalid(level: str, root: str) -> None:
    with pytest.raises(InvalidQuery):
        query_from_identifier(_identifier(QueryRetrieveLevel=level), root)


def test_answer_has_exactly_the_requested_keys() -> None:
    match = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00100020": {"vr": "LO", "Value": ["P"]},
             "7FE00010": {"vr": "OB", "BulkDataURI": "x"}}
    ds = answer(match, [0x0020000D, 0x00081030], Level.STUDY)
    assert ds.StudyInstanceUID == "1.2.3" and ds.StudyDescription == ""
    assert "PatientID" not in ds and ds.QueryRetrieveLevel == "STUDY"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_retrieve_keys() -> None:
    paths = retrieve_paths(_identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2",
                                       SeriesInstanceUID="1.2.3\\1.2.4"))
    assert [(p.study, p.series) for p in paths] == [("1.2", "1.2.3"), ("1.2", "1.2.4")]
    for bad in (dict(QueryRetrieveLevel="PATIENT", PatientID="X"),
                dict(QueryRetrieveLevel="STUDY"), dict(QueryRetrieveLevel="STUDY",
                                                       StudyInstanceUID="1.2.x")):
        with pytest.raises(InvalidQuery):
            retrieve_paths(_identifier(**bad))


def test_retrieval_contexts_fit_and_ask_for_the_scp_role() -> None:
    contexts, roles = cx.query_retrieve_requested()
    assert len(contexts) <= cx.MAX_CONTEXTS
    assert all(len(c.transfer_syntax) == 1 for c in contexts if c.abstract_syntax
               in cx.RETRIEVE_SOP_CLASSES)  # one syntax each: the PACS never transcodes
    assert {r.sop_class_uid for r in roles} == set(cx.RETRIEVE_SOP_CLASSES)
    assert all(r.scp_role for r in roles)


def test_status_names() -> None:
    assert describe(Status.MOVE_DESTINATION_UNKNOWN) == "0xA801 Refused: Move Destination unknown"
    assert describe(0xC123).startswith("0xC123 Error: unable to process")
    assert describe(None).startswith("no status")
    assert [category(c) for c in (0x0000, 0xFF01, 0xFE00, 0xB000, 0xA702)] == [
        "success", "pending", "cancel", "warning", "failure"]
