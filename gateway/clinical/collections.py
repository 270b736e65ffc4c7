"""Facts of the TCIA collections and their FHIR form (ResearchStudy, ResearchSubject).

The facts (title, DOI, licence, citation, description, subject count) are those of NCI
Imaging Data Commons' ``collections_index`` as the installed ``idc-index-data`` ships it
(docs/collections.md; nothing is fetched). Reading the parquet file costs seconds (pyarrow), so the
facts are kept as JSON in the data dir's cache, one file per idc-index-data version, and a
process reads that JSON instead.

FHIR R4: one ResearchStudy per collection (``id`` = the collection name; identifier = the DOI
in the DOI resolver's namespace; ``relatedArtifact``: the citation, and the licence as
documentation; status from IDC's ``status``); one ResearchSubject per patient and collection
(``individual`` = the Patient, ``study`` = the ResearchStudy); for a subject without a
clinical sheet, a Patient made from DICOM (id = PatientID, gender from PatientSex).
"""
from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

TCIA = "https://www.cancerimagingarchive.net"  # mapping/yaml/systems.yaml `tcia`
DOI = "https://doi.org"  # the DOI resolver: an identifier's namespace for a bare DOI
RESEARCH_STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
RELATED_ARTIFACT_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-relatedArtifact"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
# IDC collections_index.status → R4 ResearchStudy.status (research-study-status, required)
STATUS = {"Ongoing": "active", "Complete": "completed"}
GENDER = {"M": "male", "F": "female", "O": "other"}  # DICOM PatientSex → administrative-gender
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class CollectionFacts:
    name: str
    collection_id: str
    title: str
    doi: str
    url: str
    licence: str          # short name, e.g. CC BY 4.0
    licence_name: str
    licence_url: str
    citation: str         # plain text (IDC's has HTML markup)
    description: str
    subjects: int
    status: str           # IDC: Ongoing | Complete
    access: str           # Public | Limited
    modalities: str


def idc_version() -> str:
    try:
        return importlib.metadata.version("idc-index-data")
    except importlib.metadata.PackageNotFoundError:
        return ""


def load_facts(cache_dir: Path) -> dict[str, CollectionFacts]:
    """Every collection of the installed idc-index-data by name ({} when it is missing): the
    copy packaged with the gateway for that version, else the data dir's, else the parquet
    file (then cached in ``cache_dir``)."""
    version = idc_version()
    if not version:
        return {}
    name = f"collections-idc-{version}.json"
    for candidate in (Path(__file__).with_name(name), cache_dir / name):
        try:
            return {k: CollectionFacts(**v) for k, v in json.loads(candidate.read_text()).items()}
        except (OSError, ValueError, TypeError):
            continue
    facts = _read_parquet()
    try:
        write_facts(facts, cache_dir / name)
    except OSError:
        pass  # a read-only data dir: read the parquet again next time
    return facts


def write_facts(facts: dict[str, CollectionFacts], path: Path) -> None:
    """The JSON form (also how the packaged copy is made, after an idc-index-data upgrade:
    ``write_facts(_read_parquet(), Path("gateway/clinical/collections-idc-<version>.json"))``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({k: asdict(v) for k, v in sorted(facts.items())},
                              separators=(",", ":"), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _read_parquet() -> dict[str, CollectionFacts]:
    import idc_index_data
    import pyarrow.parquet as pq

    path = Path(idc_index_data.__file__).parent / "collections_index.parquet"
    rows = pq.read_table(path, columns=["collection_name", "collection_id", "subjects",
                                        "description", "sources", "status"]).to_pylist()
    out: dict[str, CollectionFacts] = {}
    for row in rows:
        source = (row["sources"] or [{}])[0]
        licence = source.get("license") or {}
        out[row["collection_name"]] = CollectionFacts(
            row["collection_name"], row["collection_id"],
            source.get("source_title") or row["collection_name"], source.get("source_doi") or "",
            source.get("source_url") or "", licence.get("license_short_name") or "",
            licence.get("license_long_name") or "", licence.get("license_url") or "",
            plain(source.get("citation") or ""), (row["description"] or "").strip(),
            int(row["subjects"] or 0), row["status"] or "", source.get("Access") or "",
            source.get("modalities") or "")
    return out


def plain(text: str) -> str:
    """IDC's citation HTML (``<i>``, ``&amp;``) as plain text on one line."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


def fhir_id(*parts: str) -> str:
    """A FHIR id (R4 id: [A-Za-z0-9-.]{1,64}) naming ``parts``: themselves joined by '-'
    when that is one, else a digest of them (stable, so rebuilding keeps versions)."""
    joined = "-".join(parts)
    if _FHIR_ID.match(joined):
        return joined
    return "c-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def research_study(name: str, facts: CollectionFacts | None) -> dict:
    study: dict = {"resourceType": "ResearchStudy", "id": fhir_id(name),
                   "identifier": [], "title": name, "status": "active"}
    study["meta"] = {"tag": [collection_tag(name)]}
    if facts is None:
        study["identifier"] = [{"system": TCIA, "value": name}]
        return study
    study["identifier"] = [{"system": DOI, "value": facts.doi, "type": {"text": "DOI"}},
                           {"system": TCIA, "value": name}] if facts.doi else \
        [{"system": TCIA, "value": name}]
    study["title"] = facts.title
    study["status"] = STATUS.get(facts.status, "active")
    if facts.description:
        study["description"] = facts.description
    artifacts = related_artifacts(facts)
    if artifacts:
        study["relatedArtifact"] = artifacts
    return study


def related_artifacts(facts: CollectionFacts) -> list[dict]:
    """The collection's data citation and licence as R4 RelatedArtifacts."""
    artifacts = []
    if facts.citation:
        artifacts.append({"type": "citation", "label": "Data citation",
                          "citation": facts.citation, **({"url": facts.url} if facts.url else {})})
    if facts.licence:
        artifacts.append({"type": "documentation", "label": "Licence",
                          "display": f"{facts.licence_name or facts.licence} ({facts.licence})",
                          **({"url": facts.licence_url} if facts.licence_url else {})})
    return artifacts


def collection_extensions(name: str, facts: CollectionFacts | None) -> list[dict]:
    """What a resource of collection ``name`` (an ImagingStudy) says of it: the
    ResearchStudy it belongs to and the collection's citation and licence, with the R4 core
    extensions workflow-researchStudy and workflow-relatedArtifact (R4 has no element
    for either on ImagingStudy)."""
    out: list[dict] = [{"url": RESEARCH_STUDY_EXT, "valueReference": {
        "reference": f"ResearchStudy/{fhir_id(name)}", "display": name}}]
    if facts is not None:
        out += [{"url": RELATED_ARTIFACT_EXT, "valueRelatedArtifact": a}
                for a in related_artifacts(facts)]
    return out


def collection_tag(name: str) -> dict:
    return {"system": TCIA, "code": name, "display": f"TCIA collection {name}"}


def research_subject(patient_id: str, collection: str) -> dict:
    return {"resourceType": "ResearchSubject", "id": fhir_id(collection, patient_id),
            "identifier": [{"system": TCIA, "value": patient_id}],
            "status": "on-study",
            "study": {"reference": f"ResearchStudy/{fhir_id(collection)}", "display": collection},
            "individual": {"reference": f"Patient/{patient_id}"}}


def dicom_patient(patient_id: str, sex: str | None, collections: list[str]) -> dict:
    """A subject without a clinical sheet, as its DICOM files describe it (docs/mapping.md)."""
    return {"resourceType": "Patient", "id": patient_id,
            "meta": {"tag": [collection_tag(c) for c in collections]},
            "identifier": [{"system": TCIA, "value": patient_id,
                            "type": {"text": "TCIA subject ID (= DICOM PatientID)"},
                            "assigner": {"display": "The Cancer Imaging Archive (TCIA)"}}],
            "name": [{"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}],
            "gender": GENDER.get((sex or "").strip().upper(), "unknown")}
