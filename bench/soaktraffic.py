"""The soak's traffic: what a viewer, a FHIR app and a modality ask of the gateway, each
request with the check of what a user would notice (status, type, counts, bytes).

One :class:`Traffic` is shared by the client threads: the cohort's instances (from the
files imported, with their SHA-256), FHIR Patient ids, the kinds of request by weight, and
what STOW has sent (so duplicates resend bytes the server already holds).
"""
from __future__ import annotations

import hashlib
import io
import random
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from urllib.parse import urlencode

import orjson
import pydicom
from pydicom.uid import generate_uid

OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DICOM_JSON = "application/dicom+json"
JPEG = b"\xff\xd8"
LOSSLESS = {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"}  # RLE, JPEG LL, JPEG-LS, J2K
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
# Kind -> weight: mostly reads as a viewer makes them, ~10 % STOW (half of them duplicates).
WEIGHTS = {
    "qido-ohif-studies": 8, "qido-by-patientid": 6, "qido-series-of-study": 6,
    "series-metadata": 6, "frame": 12, "rendered-jpeg": 6, "thumbnail": 6,
    "wado-uri-dicom": 4, "wado-uri-jpeg": 4, "fhir-patient": 6, "fhir-observation": 6,
    "fhir-imagingstudy": 6, "stow-new": 4, "stow-duplicate": 4,
}
HOT = 3        # duplicates mostly of these few files, so clients collide on one instance
SENT_KEPT = 64  # new instances remembered for resending as duplicates
CHUNKED_OVER = 1 << 20  # dicomweb-client streams larger STOW bodies chunked
TWINS = 0.3  # new STOWs also sent at once on a second connection (a hasty retry)


@dataclass(frozen=True)
class Instance:
    """One imported file: where it is, what it is, and its bytes' digest."""

    path: Path
    study: str
    series: str
    sop: str
    patient: str
    size: int
    sha256: str
    syntax: str
    frame_bytes: int  # an uncompressed frame's size; 0 when compressed

    @property
    def url(self) -> str:
        return f"/dicomweb/studies/{self.study}/series/{self.series}/instances/{self.sop}"


@dataclass(frozen=True)
class Request:
    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    check: Callable[[int, dict[str, str], bytes], str | None]  # why the answer is wrong
    new_sops: tuple[str, ...] = ()  # stow-new: the instances created
    chunked: bool = False  # send the body with Transfer-Encoding: chunked
    twin: bool = False  # sent twice at once, on two connections


def scan_cohort(root: Path) -> list[Instance]:
    """Every .dcm under ``root`` (the import source: the server holds these bytes)."""
    out = []
    for path in sorted(root.rglob("*.dcm")):
        data = path.read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        frame = (ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * ds.BitsAllocated // 8
                 if syntax in UNCOMPRESSED else 0)
        out.append(Instance(path, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                            ds.PatientID, len(data), hashlib.sha256(data).hexdigest(), syntax,
                            frame))
    return out


def stow_body(parts: list[bytes]) -> tuple[bytes, str]:
    """A STOW-RS multipart/related body (PS3.18 10.5.1.1) and its Content-Type."""
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part,
                   b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def renamed(data: bytes, series: str) -> tuple[bytes, str]:
    """The same image as a new instance of a soak series in the same study (a new
    SOPInstanceUID; the study, and so its FHIR links, unchanged)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    sop = generate_uid()
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = 9000
    ds.SeriesDescription = "soak"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), sop


@dataclass
class Traffic:
    instances: list[Instance]
    fhir_patients: list[str]
    rng_seed: int = 1
    _sent: deque = field(default_factory=lambda: deque(maxlen=SENT_KEPT))
    _first: dict = field(default_factory=dict)  # (kind, path) -> first answer's count
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.by_series: dict[tuple[str, str], list[Instance]] = defaultdict(list)
        for inst in self.instances:
            self.by_series[(inst.study, inst.series)].append(inst)
        self.studies = sorted({i.study for i in self.instances})
        self.series_in_study = {s: sum(1 for st, _se in self.by_series if st == s)
                                for s in self.studies}
        self.patients = sorted({i.patient for i in self.instances})
        self.hot = self.instances[:HOT]

    def pick(self, rng: random.Random) -> Request:
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        return getattr(self, "_" + kind.replace("-", "_"))(rng)

    # -------------------------------------------------------------- QIDO
    def _qido_ohif_studies(self, rng: random.Random) -> Request:
        query = urlencode({"limit": 101, "offset": 0, "fuzzymatching": "false",
                           "includefield": "00081030,00080060"})
        return self._json("qido-ohif-studies", f"/dicomweb/studies?{query}",
                          lambda doc: _count(doc, len(self.studies)))

    def _qido_by_patientid(self, rng: random.Random) -> Request:
        patient = rng.choice(self.patients)
        want = len({i.study for i in self.instances if i.patient == patient})

        def check(doc: object) -> str | None:
            if not isinstance(doc, list) or any(_value(r, "00100020") != patient for r in doc):
                return f"a study of another patient than {patient}"
            return _count(doc, want)
        return self._json("qido-by-patientid", f"/dicomweb/studies?PatientID={patient}", check)

    def _qido_series_of_study(self, rng: random.Random) -> Request:
        study = rng.choice(self.studies)
        want = self.series_in_study[study]

        def check(doc: object) -> str | None:  # plus at most its soak series
            n = len(doc) if isinstance(doc, list) else -1
            return None if want <= n <= want + 1 else f"{n} series, expected {want} (+1 soak)"
        return self._json("qido-series-of-study", f"/dicomweb/studies/{study}/series", check)

    def _series_metadata(self, rng: random.Random) -> Request:
        (study, series), members = rng.choice(list(self.by_series.items()))
        return self._json("series-metadata",
                          f"/dicomweb/studies/{study}/series/{series}/metadata",
                          lambda doc: _count(doc, len(members)))

    def _json(self, kind: str, path: str, check: Callable[[object], str | None]) -> Request:
        def verify(status: int, hdrs: dict[str, str], body: bytes) -> str | None:
            if not hdrs.get("content-type", "").startswith(DICOM_JSON):
                return f"Content-Type {hdrs.get('content-type')!r}"
            return check(orjson.loads(body))
        return Request(kind, "GET", path, {"Accept": DICOM_JSON}, None, verify)

    # ----------------------------------------------------------- pixels
    def _frame(self, rng: random.Random) -> Request:
        inst = rng.choice(self.instances)

        def check(status: int, hdrs: dict[str, str], body: bytes) -> str | None:
            if not hdrs.get("content-type", "").startswith("multipart/related"):
                return f"Content-Type {hdrs.get('content-type')!r}"
            if hdrs.get("content-encoding"):
                return f"pixel data sent {hdrs['content-encoding']}-encoded"
            return None if len(body) > max(inst.frame_bytes, 1) else f"{len(body)} bytes"
        return Request("frame", "GET", f"{inst.url}/frames/1", {"Accept": OHIF_FRAMES}, None,
                       check)

    def _rendered_jpeg(self, rng: random.Random) -> Request:
        inst = rng.choice(self.instances)
        return Request("rendered-jpeg", "GET", f"{inst.url}/rendered", {"Accept": "image/jpeg"},
                       None, _jpeg)

    def _thumbnail(self, rng: random.Random) -> Request:
        inst = rng.choice(self.instances)
        return Request("thumbnail", "GET", f"{inst.url}/thumbnail", {"Accept": "image/jpeg"},
                       None, _jpeg)

    def _wado_uri_dicom(self, rng: random.Random) -> Request:
        """As stored (``transferSyntax=*``, or absent for an uncompressed file): the same
        bytes; absent for a losslessly compressed one: Explicit VR Little Endian (PS3.18
        8.7.3)."""
        inst = rng.choice(self.instances)
        as_stored = inst.syntax not in LOSSLESS or rng.random() < 0.5
        params = {} if inst.syntax in UNCOMPRESSED else {"transferSyntax": "*"} if as_stored \
            else {}

        def check(status: int, hdrs: dict[str, str], body: bytes) -> str | None:
            if as_stored:
                if len(body) != inst.size or hashlib.sha256(body).hexdigest() != inst.sha256:
                    return f"{len(body)} bytes, not the {inst.size} stored (or other bytes)"
                return None
            ds = pydicom.dcmread(io.BytesIO(body))
            if ds.file_meta.TransferSyntaxUID != EXPLICIT_LE or ds.SOPInstanceUID != inst.sop:
                return f"{ds.file_meta.TransferSyntaxUID} {ds.SOPInstanceUID}, not {EXPLICIT_LE}"
            return None if len(ds.PixelData) >= max(inst.frame_bytes, 1) else "short PixelData"
        return Request("wado-uri-dicom", "GET", _wado(inst, "application/dicom", params), {},
                       None, check)

    def _wado_uri_jpeg(self, rng: random.Random) -> Request:
        inst = rng.choice(self.instances)
        return Request("wado-uri-jpeg", "GET", _wado(inst, "image/jpeg"), {}, None, _jpeg)

    # ------------------------------------------------------------- FHIR
    def _fhir_patient(self, rng: random.Random) -> Request:
        pid = rng.choice(self.fhir_patients)
        return self._fhir("fhir-patient", f"/fhir/Patient?_id={pid}", exact=1)

    def _fhir_observation(self, rng: random.Random) -> Request:
        pid = rng.choice(self.fhir_patients)
        return self._fhir("fhir-observation",
                          f"/fhir/Observation?patient={pid}&category=laboratory")

    def _fhir_imagingstudy(self, rng: random.Random) -> Request:
        pid = rng.choice(self.fhir_patients)
        return self._fhir("fhir-imagingstudy", f"/fhir/ImagingStudy?patient={pid}")

    def _fhir(self, kind: str, path: str, exact: int | None = None) -> Request:
        """A searchset Bundle with as many entries as ``exact``, else as the first answer."""
        def check(status: int, hdrs: dict[str, str], body: bytes) -> str | None:
            if not hdrs.get("content-type", "").startswith("application/fhir+json"):
                return f"Content-Type {hdrs.get('content-type')!r}"
            doc = orjson.loads(body)
            if doc.get("resourceType") != "Bundle" or doc.get("type") != "searchset":
                return "not a searchset Bundle"
            n = len(doc.get("entry", []))
            want = exact if exact is not None else self._first_count((kind, path), n)
            return None if n == want else f"{n} entries, expected {want}"
        return Request(kind, "GET", path, {"Accept": "application/fhir+json"}, None, check)

    def _first_count(self, key: tuple[str, str], n: int) -> int:
        with self._lock:
            return self._first.setdefault(key, n)

    # ------------------------------------------------------------- STOW
    def _stow_new(self, rng: random.Random) -> Request:
        """1-3 new instances in one body; over 1 MB chunked, as dicomweb-client sends it."""
        parts, sops = [], []
        for source in rng.sample(self.instances, rng.choice((1, 1, 1, 2, 3))):
            series = generate_uid(entropy_srcs=[source.study, "soak"])  # one per study
            data, sop = renamed(source.path.read_bytes(), series)
            parts.append(data)
            sops.append(sop)
        with self._lock:
            self._sent.extend(parts)
        return self._stow("stow-new", parts, tuple(sops), twin=rng.random() < TWINS)

    def _stow_duplicate(self, rng: random.Random) -> Request:
        """Identical bytes again: a new instance just sent (likely still in flight, so two
        first stores of one instance race, where files were once lost), one of the hot few
        imported files (several clients at once), any imported file, or a new one sent before."""
        choice = rng.random()
        with self._lock:
            kept = self._sent if choice < 0.4 or choice >= 0.85 else ()
            sent = (kept[-1 - rng.randrange(min(2, len(kept)))] if choice < 0.4 else
                    rng.choice(kept)) if kept else None
        if sent is None:
            pool = self.hot if choice < 0.7 else self.instances
            sent = rng.choice(pool).path.read_bytes()
        return self._stow("stow-duplicate", [sent], ())

    def _stow(self, kind: str, parts: list[bytes], new_sops: tuple[str, ...],
              twin: bool = False) -> Request:
        body, content_type = stow_body(parts)
        chunked = len(body) > CHUNKED_OVER
        kind += ("-chunked" if chunked else "") + ("-twice-at-once" if twin else "")

        def check(status: int, hdrs: dict[str, str], answer: bytes) -> str | None:
            return _stowed(answer, len(parts))
        return Request(kind, "POST", "/dicomweb/studies",
                       {"Content-Type": content_type, "Accept": DICOM_JSON}, body, check,
                       new_sops, chunked, twin)


def _stowed(body: bytes, parts: int) -> str | None:
    """PS3.18 10.5.3: every part in ReferencedSOPSequence, none in FailedSOPSequence."""
    doc = orjson.loads(body)
    failed = doc.get("00081198", {}).get("Value", [])
    stored = doc.get("00081199", {}).get("Value", [])
    if failed or len(stored) != parts:
        return f"{len(stored)} referenced, failed: {orjson.dumps(failed).decode()[:300]}"
    return None


def _jpeg(status: int, hdrs: dict[str, str], body: bytes) -> str | None:
    if hdrs.get("content-type") != "image/jpeg" or not body.startswith(JPEG):
        return f"not a JPEG ({hdrs.get('content-type')!r}, {len(body)} bytes)"
    return None


def _wado(inst: Instance, content_type: str, extra: dict[str, str] | None = None) -> str:
    return "/wado?" + urlencode({"requestType": "WADO", "studyUID": inst.study,
                                 "seriesUID": inst.series, "objectUID": inst.sop,
                                 "contentType": content_type, **(extra or {})})


def _count(doc: object, want: int) -> str | None:
    n = len(doc) if isinstance(doc, list) else -1
    return None if n == want else f"{n} results, expected {want}"


def _value(item: dict, tag: str) -> object:
    return (item.get(tag, {}).get("Value") or [None])[0]
