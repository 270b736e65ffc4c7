"""Parsing of chains, _has, composites and _sort: what each valid form means, and a 400
naming the parameter as sent for every way to get one wrong."""
from __future__ import annotations

import pytest

from gateway.fhir import chains as C
from gateway.fhir import search as S
from gateway.fhir.outcome import FhirError

DM2 = "http://snomed.info/sct|44054006"


def parse(kind: str, *args: tuple[str, str], lenient: bool = False) -> S.SearchRequest:
    return S.parse(kind, list(args), lenient=lenient)


def refused(kind: str, key: str, value: str = "x") -> FhirError:
    with pytest.raises(FhirError) as caught:
        parse(kind, (key, value))
    assert caught.value.status == 400
    return caught.value


def test_forward_chain_to_patient():
    (chain,) = parse("Observation", ("patient.gender", "male")).clauses
    assert isinstance(chain, C.Chain) and chain.target == "Patient" and chain.ref.name == "patient"
    assert chain.inner.param.name == "gender" and chain.inner.values == ((S.ANY, "male"),)
    typed = parse("ImagingStudy", ("subject:Patient.deceased", "true")).clauses[0]
    assert typed.ref.name == "subject" and typed.inner.values == ((S.ANY, "true"),)
    negated = parse("Condition", ("patient.gender:not", "male")).clauses[0]
    assert negated.inner.modifier == "not"


def test_reverse_chain_and_nesting():
    (has,) = parse("Patient", ("_has:Condition:patient:code", DM2)).clauses
    assert (has.source, has.ref.name, has.target) == ("Condition", "patient", "Patient")
    assert has.inner.values == (("http://snomed.info/sct", "44054006"),)
    nested = parse("ImagingStudy", ("patient._has:Condition:patient:code", DM2)).clauses[0]
    assert isinstance(nested, C.Chain) and isinstance(nested.inner, C.Has)
    assert nested.key == "patient._has:Condition:patient:code"
    derived = parse("ImagingStudy", ("_has:Observation:derived-from:code-value-quantity",
                                     "http://loinc.org|3150-0$ge50")).clauses[0]
    assert derived.target == "ImagingStudy" and derived.inner.param.type == "composite"
    deep = parse("ImagingStudy", ("_has:Observation:derived-from:patient._has:Condition:patient:code", DM2))
    assert isinstance(deep.clauses[0].inner, C.Chain) and isinstance(deep.clauses[0].inner.inner, C.Has)


def test_composite_values():
    clause = parse("Observation", ("code-value-quantity",
                                   "http://loinc.org|39156-5$ge40,http://loinc.org|3150-0$lt30.5")).clauses[0]
    first, second = clause.values
    assert first[0] == ("http://loinc.org", "39156-5") and first[1][:2] == ("ge", 40.0)
    assert second[1][:2] == ("lt", 30.5)
    concept = parse("Observation", ("code-value-concept", "94500-6$http://snomed.info/sct|260373001"))
    assert concept.clauses[0].values[0] == ((S.ANY, "94500-6"), ("http://snomed.info/sct", "260373001"))


def test_sort_keys():
    request = parse("ImagingStudy", ("_sort", "patient,-started"))
    assert [(k.param.name, k.descending) for k in request.sort] == [("patient", False), ("started", True)]
    dstu2 = parse("Observation", ("_sort:asc", "patient"), ("_sort:desc", "date"))  # fhirclient's $asc/$desc
    assert [(k.param.name, k.descending) for k in dstu2.sort] == [("patient", False), ("date", True)]
    assert ("_sort", "patient,-started") in request.link_params  # next links keep the order


def test_race_and_text_and_typed_reference():
    assert parse("Patient", ("race", "urn:oid:2.16.840.1.113883.6.238|2106-3")).clauses[0].param.url \
        == S.US_CORE_RACE
    assert parse("DiagnosticReport", ("_content", "Ground-Glass,  consolidation")).clauses[0].values \
        == ("ground-glass", "consolidation")
    typed = parse("Observation", ("derived-from", "ImagingStudy/1.2.3")).clauses[0]
    assert typed.values == (("ImagingStudy", "1.2.3"),)
    assert parse("Observation", ("derived-from", "1.2.3")).clauses[0].values == ((None, "1.2.3"),)
    typed_patient = parse("Observation", ("subject:Patient", "p1")).clauses[0]  # R4 type modifier
    assert typed_patient.modifier is None and typed_patient.values == ("p1",)


@pytest.mark.parametrize("kind, key, value, named, says", [
    # unknown chain target parameter
    ("Observation", "patient.foo", "1", "patient.foo", "Unknown search parameter 'foo' for Patient"),
    ("ImagingStudy", "patient._has:Condition:patient:foo", "1", "patient._has:Condition:patient:foo",
     "'foo'"),
    # chain on a non-reference
    ("Patient", "gender.x", "1", "gender.x", "not a reference"),
    ("Observation", "code.display", "1", "code.display", "not a reference"),
    # chain to a type we cannot reach, or the wrong type
    ("Observation", "derived-from.modality", "CT", "derived-from.modality", "not supported"),
    ("Observation", "patient:Group.name", "x", "patient:Group.name", "not Group"),
    ("Observation", "patient.", "x", "patient.", "needs a Patient parameter"),
    # _has malformed
    ("Patient", "_has", "x", "_has", "_has:<type>:<reference parameter>:<parameter>"),
    ("Patient", "_has:Condition", "x", "_has:Condition", "_has:<type>"),
    ("Patient", "_has:Condition:patient", "x", "_has:Condition:patient", "_has:<type>"),
    ("Patient", "_has:Condition::code", "x", "_has:Condition::code", "_has:<type>"),
    ("Patient", "_has:Foo:patient:code", "x", "_has:Foo:patient:code", "not a resource type"),
    ("Patient", "_has:Condition:code:code", "x", "_has:Condition:code:code", "not a reference"),
    ("Patient", "_has:Condition:patient:foo", "x", "_has:Condition:patient:foo", "'foo'"),
    ("Patient", "_has:Observation:derived-from:code", "x", "_has:Observation:derived-from:code",
     "refers to ImagingStudy, not Patient"),
    ("ImagingStudy", "_has:Observation:patient:code", "x", "_has:Observation:patient:code",
     "refers to Patient, not ImagingStudy"),
    ("Patient", "_has:ImagingStudy:patient:modality", "CT", "_has:ImagingStudy:patient:modality",
     "not supported"),
    ("Patient", "_has:Condition:patient:code", "", "_has:Condition:patient:code", "has no value"),
    ("Patient", "_has:Condition:patient:onset-date", "soon", "_has:Condition:patient:onset-date",
     "not a FHIR date"),
    ("ImagingStudy", "patient._has:Observation:patient:patient._has:Condition:patient:code", "x",
     "patient._has:Observation:patient:patient._has:Condition:patient:code", "nest at most 4"),
    # _sort
    ("Patient", "_sort", "zzz", "_sort", "'zzz' is not a search parameter of Patient"),
    ("Observation", "_sort", "code-value-quantity", "_sort", "not supported"),
    ("DiagnosticReport", "_sort", "_content", "_sort", "not supported"),
    ("Observation", "_sort", "derived-from", "_sort", "not supported"),
    ("Observation", "_sort", "date,-date", "_sort", "twice"),
    ("Observation", "_sort", "date,", "_sort", "empty key"),
    ("Observation", "_sort", "patient.gender", "_sort", "not a search parameter"),
    ("Observation", "_sort:foo", "date", "_sort:foo", "no modifier"),
    ("Observation", "_sort:desc", "date,code", "_sort:desc", "one parameter name"),
    # composite malformed
    ("Observation", "code-value-quantity", "http://loinc.org|39156-5", "code-value-quantity",
     "code$value-quantity"),
    ("Observation", "code-value-quantity", "a$ge1$2", "code-value-quantity", "code$value-quantity"),
    ("Observation", "code-value-quantity", "$ge40", "code-value-quantity", "code$value-quantity"),
    ("Observation", "code-value-quantity", "39156-5$lots", "code-value-quantity", "[prefix]number"),
    ("Observation", "code-value-quantity:missing", "true", "code-value-quantity:missing", "not supported"),
    ("Observation", "_content:exact", "x", "_content:exact", "not supported"),
    # references to other types
    ("Observation", "derived-from", "Patient/1", "derived-from", "not a reference to ImagingStudy"),
    ("Observation", "subject:Group", "g1", "subject:Group", "not supported"),
])
def test_every_error_names_the_parameter(kind, key, value, named, says):
    error = refused(kind, key, value)
    assert error.expression == named
    assert says in error.message


def test_sort_given_twice_is_refused():
    with pytest.raises(FhirError) as caught:
        parse("Observation", ("_sort", "date"), ("_sort", "code"))
    assert caught.value.status == 400 and "twice" in caught.value.message


def test_lenient_ignores_unknown_chained_names_but_not_malformed_values():
    request = parse("Observation", ("patient.foo", "1"), ("_has:Foo:x:y", "1"), ("code", "x"), lenient=True)
    assert request.ignored == ["patient.foo", "_has:Foo:x:y"] and len(request.clauses) == 1
    with pytest.raises(FhirError):
        parse("Observation", ("patient.birthdate", "yesterday"), lenient=True)
    with pytest.raises(FhirError):
        parse("Patient", ("gender.x", "1"), lenient=True)  # known, but not a reference
