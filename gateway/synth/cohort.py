"""The classic cohort: COVID-19-AR's published marginals, drawn for any number of patients.

The twin (``twin.py``) follows the real collection series for series; this model instead draws
patients, studies and one-series-per-kind CT from the collection's marginals, with the compressed
transfer-syntax variants (RLE, JPEG 2000) and MONOCHROME1 spread over it, so small test cohorts
hold every case.

Exact marginals (sex, race, study counts, ICU, CT patients) are allocated once for the whole
cohort from a cohort-level RNG; everything else about a patient comes from an RNG seeded with
(seed, patient index), so one patient's details never depend on another's. Building the model is
cheap (no pixels): pixel rendering in worker processes reads it, and the sheets are written from it.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from . import tables as T
from .model import (  # noqa: F401  (re-exported: the classic cohort's public names)
    CR_IMAGE,
    CT_IMAGE,
    DX_IMAGE,
    EXPLICIT_VR_LE,
    JPEG2000_LOSSLESS,
    RLE_LOSSLESS,
    UID_NAMESPACE,
    Cohort,
    PatientSpec,
    SeriesSpec,
    StudySpec,
    make_uid,
    marks_for,
)
from .tables import Finding

COLLECTION = "COVID-19-AR"

@dataclass(frozen=True)
class _Allocation:
    """What must add up exactly over the cohort, decided before any patient is drawn."""

    patient_id: str
    sex: str
    race: str
    age: int
    icu: bool
    xr_studies: int
    ct: bool
    blank_body: bool


def scale_counts(reference: dict[str, int], n: int) -> dict[str, int]:
    """Scale counts given for 105 patients to ``n`` (largest remainder: exact sum, exact at 105)."""
    total = sum(reference.values())
    raw = {k: v * n / total for k, v in reference.items()}
    out = {k: math.floor(v) for k, v in raw.items()}
    short = n - sum(out.values())
    for k in sorted(raw, key=lambda k: (out[k] - raw[k], list(raw).index(k)))[:short]:
        out[k] += 1
    return out


def every_kth(n: int, m: int) -> list[bool]:
    """Evenly spread ``m`` of ``n`` (Bresenham): m = n/2 selects every second index."""
    return [(i + 1) * m // n > i * m // n for i in range(n)]


def _shuffled(rng: np.random.Generator, counts: dict[str, int]) -> list[str]:
    values = [k for k, c in counts.items() for _ in range(c)]
    return [values[i] for i in rng.permutation(len(values))]


def _ages(rng: np.random.Generator, n: int) -> list[int]:
    lo, hi = T.AGE_RANGE
    ages = np.clip(np.rint(rng.normal(T.AGE_MEAN, T.AGE_SD, n)), lo, hi).astype(int)
    if n >= 2:  # the collection spans the full range
        ages[int(np.argmin(ages))], ages[int(np.argmax(ages))] = lo, hi
    return [int(a) for a in ages]


def _patient_ids(rng: np.random.Generator, n: int) -> list[str]:
    ids: list[int] = []
    while len(ids) < n:
        v = int(rng.integers(10_000_000, 100_000_000))
        if v not in ids:
            ids.append(v)
    return [f"COVID-19-AR-{v}" for v in ids]


def _allocate(n: int, seed: int, ct_fraction: float | None) -> list[_Allocation]:
    rng = np.random.default_rng([seed, 0])
    ids = _patient_ids(rng, n)
    sexes = _shuffled(rng, scale_counts(T.SEX_AT_105, n))
    races = _shuffled(rng, scale_counts(T.RACE_AT_105, n))
    ages = _ages(rng, n)
    icu = np.zeros(n, bool)
    icu[rng.permutation(n)[: round(T.ICU_FRACTION * n)]] = True
    xr_total = max(n, round(T.XR_STUDIES_AT_105 * n / T.REFERENCE_PATIENTS))
    weights = np.where(icu, 3.0, 1.0)
    extra = rng.choice(n, size=max(xr_total - n, 0), p=weights / weights.sum())
    xr = 1 + np.bincount(np.asarray(extra, dtype=int), minlength=n)
    fraction = T.CT_STUDIES_AT_105 / T.REFERENCE_PATIENTS if ct_fraction is None else ct_fraction
    ct = every_kth(n, round(min(max(fraction, 0.0), 1.0) * n))
    blank = np.zeros(n, bool)
    blank[rng.permutation(n)[: round(T.BLANK_BODY_AT_105 * n / T.REFERENCE_PATIENTS)]] = True
    return [
        _Allocation(ids[i], sexes[i], races[i], ages[i], bool(icu[i]), int(xr[i]), ct[i],
                    bool(blank[i]))
        for i in range(n)
    ]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _body(rng: np.random.Generator, sex: str, blank: bool
          ) -> tuple[float | None, float, int | None, str | int | None]:
    """BMI, weight (lb), height (in) and its sheet text, consistent with each other."""
    height = int(np.rint(rng.normal(69.5 if sex == "M" else 64.0, 2.8)))
    bmi_target = float(np.clip(rng.normal(32.0, 7.5), 16.5, 62.0))
    weight = round(bmi_target * height * height / 703.0, 1)
    bmi = round(703.0 * weight / (height * height), 2)
    text: str | int = f"{height // 12}' {height % 12}\"" if rng.random() > 0.08 else height
    if blank:
        return None, weight, None, None
    return bmi, weight, height, text


def _comorbidities(rng: np.random.Generator, sex: str, age: int) -> tuple[tuple[str, str], ...]:
    out = []
    for name, prevalence in T.COMORBIDITIES.items():
        if name == "current_pregnant":
            prevalence = T.PREGNANT_PREVALENCE if sex == "F" and age <= 45 else 0.0
        out.append((name, "Y" if rng.random() < prevalence else "N"))
    return tuple(out)


def _diagnosis(rng: np.random.Generator) -> datetime:
    start, window = T.DIAGNOSIS_WINDOW
    real = datetime.fromisoformat(start) + timedelta(days=int(rng.integers(0, window)))
    shift = timedelta(days=int(rng.integers(*T.DATE_SHIFT_DAYS)))
    return real + shift + timedelta(minutes=int(rng.integers(6 * 60, 22 * 60)))


def _timeline(rng: np.random.Generator, n_xr: int, ct: bool, icu: bool) -> list[tuple[float, str]]:
    """Hours from diagnosis of each study, in order, tagged XR or CT."""
    hours, t = [], float(rng.uniform(-30.0, 24.0))
    for _ in range(n_xr):
        hours.append((round(t, 1), "XR"))
        t += float(rng.uniform(18, 30) if icu else rng.uniform(20, 96))
    if ct:
        last = hours[-1][0]
        hours.append((round(float(rng.uniform(hours[0][0] + 2, last + 48)), 1), "CT"))
    return sorted(hours)


def _severities(rng: np.random.Generator, count: int, icu: bool) -> list[int]:
    """Per-study severity: rises to the patient's peak and eases off at the end."""
    w = T.ICU_SEVERITY_WEIGHTS if icu else T.WARD_SEVERITY_WEIGHTS
    peak = int(rng.choice(4, p=np.array(w) / sum(w)))
    out = []
    for i in range(count):
        edge = i == 0 or (i == count - 1 and count > 2)
        out.append(max(0, peak - 1) if edge and rng.random() < 0.6 else peak)
    return out


def _fio2(rng: np.random.Generator, severity: int, icu: bool) -> int:
    choices = T.FIO2_CHOICES[severity]
    if icu and severity >= 2:
        choices = T.FIO2_CHOICES[3]
    return int(choices[int(rng.integers(len(choices)))])


def _xr_type(rng: np.random.Generator, icu: bool, severity: int) -> T.XrStudyType:
    sick = icu or severity >= 2
    weights = {t.description: (t.icu_weight if sick else t.ward_weight) for t in T.XR_STUDY_TYPES}
    chosen = _pick(rng, weights)
    return next(t for t in T.XR_STUDY_TYPES if t.description == chosen)


@dataclass(frozen=True)
class _Draft:
    """A study before cohort-wide choices (modality, transfer syntax) are made."""

    hours: float
    kind: str
    description: str
    views: tuple[str, ...]
    fio2: int | None
    finding: Finding


def _drafts(rng: np.random.Generator, a: _Allocation) -> list[_Draft]:
    timeline = _timeline(rng, a.xr_studies, a.ct, a.icu)
    severities = _severities(rng, len(timeline), a.icu)
    drafts = []
    for (hours, kind), severity in zip(timeline, severities, strict=False):
        views: tuple[str, ...]
        if kind == "CT":
            description, views = _pick(rng, T.CT_STUDY_TYPES), ("AXIAL",)
            pool = T.CT_FINDINGS[severity]
        else:
            xr = _xr_type(rng, a.icu, severity)
            description, views, pool = xr.description, xr.views, T.XR_FINDINGS[severity]
        finding = pool[int(rng.integers(len(pool)))]
        drafts.append(_Draft(hours, kind, description, views, _fio2(rng, severity, a.icu), finding))
    return drafts


def ct_spacing(slices: int) -> float:
    """Slice spacing (= thickness) in mm so that ``slices`` cover about the whole chest."""
    return round(T.CT_COVERAGE_MM / max(slices, 1), 2)


def _xr_encoding(k: int) -> tuple[str, str, bool]:
    """Modality, transfer syntax and MONOCHROME1 flag of the k-th radiograph study of the cohort.

    Every 4th study (k = 1, 5, 9, …) is compressed, alternating RLE Lossless and JPEG 2000
    Lossless; every 3rd is CR (half of the CRs MONOCHROME1, as CR readers often write), the rest DX.
    """
    modality = "CR" if k % 3 == 2 else "DX"
    syntax = EXPLICIT_VR_LE
    if k % 4 == 1:
        syntax = RLE_LOSSLESS if (k // 4) % 2 == 0 else JPEG2000_LOSSLESS
    return modality, syntax, modality == "CR" and (k // 3) % 2 == 0


def _series(seed: int, study_uid: str, draft: _Draft, ct_slices: int, xr: tuple[str, str, bool]
            ) -> tuple[SeriesSpec, ...]:
    if draft.kind == "CT":
        uid = make_uid(seed, study_uid, "series", 2)
        sops = tuple(make_uid(seed, uid, i) for i in range(ct_slices))
        label = f"AXIAL {ct_spacing(ct_slices):.1f}MM"
        maker, model = T.CT_EQUIPMENT
        return (SeriesSpec(uid, 2, label, ("AXIAL",) * ct_slices, sops, "CT", CT_IMAGE,
                           EXPLICIT_VR_LE, pixel_rep=1, kind="axial", manufacturer=maker,
                           model=model, thickness=ct_spacing(ct_slices)),)
    modality, syntax, mono1 = xr
    maker, model = T.XR_EQUIPMENT[modality]
    out = []
    for number, view in enumerate(draft.views, start=1):
        uid = make_uid(seed, study_uid, "series", number)
        out.append(SeriesSpec(uid, number, T.VIEW_SERIES_DESCRIPTION[view], (view,),
                              (make_uid(seed, uid, 0),), modality,
                              CR_IMAGE if modality == "CR" else DX_IMAGE, syntax,
                              "MONOCHROME1" if mono1 else "MONOCHROME2", manufacturer=maker,
                              model=model))
    return tuple(out)


@dataclass(frozen=True)
class Clinical:
    """A patient's clinical-sheet values, drawn from the patient's own RNG."""

    zip: str
    bmi: float | None
    weight_lb: float | None
    height_in: int | None
    height_text: str | int | None
    comorbidities: tuple[tuple[str, str], ...]
    test_name: str
    icu_admits: int
    mortality: bool
    genbank: str


def draw_clinical(rng: np.random.Generator, sex: str, age: int, icu: bool, blank_body: bool
                  ) -> Clinical:
    """Everything of a patients-sheet row except identity, age, sex and race."""
    zip3 = _pick(rng, T.ZIP_WEIGHTS)
    bmi, weight, height, height_text = _body(rng, sex, blank_body)
    comorbidities = _comorbidities(rng, sex, age)
    test_name = _pick(rng, T.TEST_NAMES)
    icu_admits = (2 if rng.random() < 0.15 else 1) if icu else 0
    mortality = bool(rng.random() < (0.35 if icu else 0.04))
    genbank = f"{T.GENBANK_PREFIX}{int(rng.integers(100000, 1000000))}" \
        if rng.random() < T.GENBANK_FRACTION else ""
    return Clinical(zip3, bmi, weight, height, height_text, comorbidities, test_name, icu_admits,
                    mortality, genbank)


def accession_for(study_uid: str) -> str:
    return f"{uuid.uuid5(UID_NAMESPACE, study_uid).int % 10**10:010d}"


def _patient(seed: int, index: int, a: _Allocation, ct_slices: int, xr_counter: list[int]
             ) -> PatientSpec:
    rng = np.random.default_rng([seed, 1, index])
    c = draw_clinical(rng, a.sex, a.age, a.icu, a.blank_body)
    diagnosis = _diagnosis(rng)
    studies = []
    for ordinal, d in enumerate(_drafts(rng, a)):
        uid = make_uid(seed, a.patient_id, "study", ordinal)
        when = diagnosis + timedelta(hours=d.hours)
        xr = ("CT", EXPLICIT_VR_LE, False)
        if d.kind != "CT":
            xr = _xr_encoding(xr_counter[0])
            xr_counter[0] += 1
        studies.append(StudySpec(
            index, ordinal, uid, d.description, xr[0], when,
            (when.date() - diagnosis.date()).days, d.hours, d.fio2, d.finding,
            _series(seed, uid, d, ct_slices, xr), accession_for(uid), str(ordinal + 1)))
    return PatientSpec(index, a.patient_id, a.age, a.sex, a.race, c.zip, c.bmi, c.weight_lb,
                       c.height_in, c.height_text, c.comorbidities, c.test_name, a.icu,
                       c.icu_admits, c.mortality, c.genbank, diagnosis, tuple(studies))


def _blank_fio2(seed: int, patients: list[PatientSpec]) -> list[PatientSpec]:
    """Leave a few FiO2 cells empty, as the real imaging sheet does."""
    rows = [(pi, si) for pi, p in enumerate(patients) for si in range(len(p.studies))]
    count = round(T.BLANK_FIO2_AT_105 * len(patients) / T.REFERENCE_PATIENTS)
    rng = np.random.default_rng([seed, 3])
    for k in sorted(rng.permutation(len(rows))[:count]):
        pi, si = rows[int(k)]
        studies = list(patients[pi].studies)
        studies[si] = replace(studies[si], fio2=None)
        patients[pi] = replace(patients[pi], studies=tuple(studies))
    return patients


def build_cohort(patients: int = T.REFERENCE_PATIENTS, *, seed: int = 0, ct_slices: int = 64,
                 xr_size: int = 1024, ct_fraction: float | None = None, ct_size: int = 512
                 ) -> Cohort:
    """The whole cohort model (no pixels): same arguments, same cohort."""
    if patients < 1:
        raise ValueError("patients must be >= 1")
    if ct_slices < 1 or xr_size < 64:
        raise ValueError("ct_slices must be >= 1 and xr_size >= 64")
    counter = [0]
    built = [_patient(seed, i, a, ct_slices, counter)
             for i, a in enumerate(_allocate(patients, seed, ct_fraction))]
    return Cohort(seed, ct_slices, xr_size, tuple(_blank_fio2(seed, built)), marks_for(COLLECTION),
                  ct_size)


def patient_row(p: PatientSpec) -> dict[str, object]:
    """The patients-sheet row (normalised column → typed value; None for an empty cell)."""
    row: dict[str, object] = {
        "patient_id": p.patient_id, "age": p.age, "sex": p.sex, "race": p.race, "zip": int(p.zip),
        "latest_bmi": p.bmi, "latest_weight": p.weight_lb, "latest_height": p.height_text,
    }
    row.update(dict(p.comorbidities))
    row.update({
        "covid_test_positive": "Y", "test_name": p.test_name,
        "icu_admit": "Y" if p.icu_admit else "N", "icu_admits": p.icu_admits,
        "mortality": "Y" if p.mortality else "N",
        "genbank_accession": p.genbank or None,
    })
    return {name: row[name] for name, _ in T.PATIENT_COLUMNS}


def imaging_row(p: PatientSpec, s: StudySpec) -> dict[str, object]:
    """The imaging-sheet row of one study (normalised column → typed value)."""
    return {
        "patient_id": p.patient_id, "diag_to_img_study_days": s.days,
        "diagnosis_to_imaging_time_hrs": s.hours, "image_study_description": s.description,
        "study_modality": s.modality, "fio2_time_of_img_study": s.fio2,
        "radiologist_key_findings": s.finding.text,
    }
