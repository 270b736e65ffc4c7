"""The twin: a real collection's patients, studies and series, with synthetic everything else.

Structure comes from the real index (``skeleton.py``): which studies a patient has, the study
and series descriptions and numbers, modality, SOP class, transfer syntax, photometric
interpretation, pixel representation, equipment and instance counts. PatientIDs keep the real
ones' shape but are drawn from the seed and never equal a real one; UIDs are ``2.25`` UUID
UIDs of the seed; dates move by one collection-wide shift (whole weeks), so the real spread and
every interval survive. Clinical values (race, ICU, findings, FiO2, body measures) are drawn as
the classic cohort draws them.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import date, datetime, time, timedelta

import numpy as np

from . import tables as T
from .cohort import (
    _fio2,
    _severities,
    _shuffled,
    accession_for,
    draw_clinical,
    scale_counts,
)
from .model import (
    CT_IMAGE,
    DOSE_SR,
    NM_IMAGE,
    PET_IMAGE,
    Cohort,
    PatientSpec,
    SeriesSpec,
    StudySpec,
    make_uid,
    marks_for,
)
from .skeleton import RealSeries, Skeleton
from .xr import view_of

THIN = 10  # without --full, a CT series of n images keeps ceil(n / THIN) of them
CAP_MM, CHEST_SPAN_MM = 560.0, 320.0
_PROJECTION = ("SCOUT", "SURVIEW", "TOPO", "LOCATOR", "LOCALIZER")
_MONITOR = ("SMART PREP", "BOLUS", "TIMING", "MONITOR")
_LOWER = ("ABD", "PELV", "KIDNEY", "KID ", "BLAD")


def kind_of(r: RealSeries) -> str:
    """What the renderer draws for a real series (see ``SeriesSpec.kind``)."""
    d = (r.description or "").upper()
    if r.modality in ("CR", "DX"):
        return "xr"
    if r.sop_class == DOSE_SR or r.modality == "SR":
        return "sr"
    if r.photometric == "RGB":
        return "fused"
    if r.sop_class == NM_IMAGE:
        return "nm"
    if r.sop_class == PET_IMAGE:
        return "pet"
    plane = "sagittal" if "SAG" in d else "coronal" if "COR" in d else ""
    if r.modality in ("PT", "NM"):
        return "pet-mip"  # Secondary Capture MIPs of an emission study
    if r.modality == "MR":
        return f"mr-{plane or 'axial'}"
    if any(w in d for w in _PROJECTION) or (r.number == 1 and r.instances <= 8) or \
            (not d and r.instances <= 3):
        return "projection"
    if any(w in d for w in _MONITOR):
        return "monitor"
    if "MIP" in d:
        return f"mip-{plane or 'coronal'}"
    return plane or "axial"


def thickness_of(r: RealSeries, kind: str, span: float) -> float:
    """Nominal slice (or MIP slab) thickness: from the description, else the real spacing."""
    d = (r.description or "").upper()
    slab = re.search(r"(\d+(?:\.\d+)?)\s*X\s*\d", d)
    named = re.search(r"(\d*\.?\d+)\s*MM", d) or re.search(r"\b(\d\.\d+)\b", d)
    if slab:
        return float(slab.group(1))
    if named and 0 < float(named.group(1)) <= 20:
        return float(named.group(1))
    if kind.startswith("mip"):
        return 10.0
    if kind in ("axial", "mr-axial", "pet"):
        return round(span / max(r.instances, 1), 2)
    return 2.0


def _count(r: RealSeries, full: bool) -> int:
    return r.instances if full or r.modality != "CT" else math.ceil(r.instances / THIN)


def _span(rows: list[RealSeries]) -> float:
    text = " ".join(f"{r.study_description or ''} {r.body_part or ''}" for r in rows).upper()
    return CAP_MM if any(w in text for w in _LOWER) else CHEST_SPAN_MM


def _series(seed: int, uid: str, j: int, r: RealSeries, full: bool, span: float) -> SeriesSpec:
    n = _count(r, full)
    kind = kind_of(r)
    coverage = None
    if kind == "axial" and r.instances < 40:  # delayed phases: a short stretch, low down
        coverage = min(span, r.instances * 5.0)
    view = view_of(r.description or r.study_description)
    return SeriesSpec(
        uid, r.number, r.description, (view,), tuple(make_uid(seed, uid, i) for i in range(n)),
        r.modality, r.sop_class, r.syntax, r.photometric or "MONOCHROME2", r.pixel_rep or 0,
        kind, r.manufacturer, r.model, r.body_part, 2 * j, thickness_of(r, kind, span), coverage)


def synthetic_id(real: str, rng: np.random.Generator, taken: set[str]) -> str:
    """The real ID's shape with its last run of digits redrawn; never a taken (or real) ID."""
    match = list(re.finditer(r"\d+", real))
    head, width = (real[:match[-1].start()], len(match[-1].group())) if match else (real + "-", 6)
    while True:
        candidate = f"{head}{int(rng.integers(0, 10 ** width)):0{width}d}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _select(groups: dict[str, list[RealSeries]], n: int | None, seed: int) -> list[str]:
    """All patients, or ``n`` of them (CT-bearing ones in proportion, at least one)."""
    ids = list(groups)
    if n is None or n >= len(ids):
        return ids
    rng = np.random.default_rng([seed, 10])
    ct = [p for p in ids if any(r.sop_class == CT_IMAGE for r in groups[p])]
    rest = [p for p in ids if p not in set(ct)]
    k = min(len(ct), max(1 if ct else 0, round(n * len(ct) / len(ids))))
    k = max(k, n - len(rest))
    chosen = set(rng.choice(ct, k, replace=False).tolist() if k else [])
    chosen |= set(rng.choice(rest, n - k, replace=False).tolist() if n - k else [])
    return [p for p in ids if p in chosen]


def _age(rows: list[RealSeries], rng: np.random.Generator) -> int:
    for r in rows:
        if r.age and r.age[:-1].isdigit() and r.age.endswith("Y"):
            return int(r.age[:-1])
    return int(np.clip(np.rint(rng.normal(T.AGE_MEAN, T.AGE_SD)), 18, 90))


def _sex(rows: list[RealSeries], rng: np.random.Generator) -> str:
    known = [r.sex for r in rows if r.sex in ("M", "F")]
    return known[0] if known else ("M" if rng.random() < 0.5 else "F")


def _studies(rows: list[RealSeries]) -> list[list[RealSeries]]:
    by: dict[str, list[RealSeries]] = defaultdict(list)
    for r in rows:
        by[r.study].append(r)
    return sorted(by.values(), key=lambda rs: (rs[0].study_date or date.min, rs[0].study))


def _unique(seed: int, taken: set[str], *parts: object) -> str:
    """A UID whose last five characters (the NBIA folder suffix) are new among ``taken``."""
    uid, salt = make_uid(seed, *parts), 0
    while uid[-5:] in taken:
        salt += 1
        uid = make_uid(seed, *parts, "salt", salt)
    taken.add(uid[-5:])
    return uid


def _times(rng: np.random.Generator, groups: list[list[RealSeries]], shift: timedelta
           ) -> list[datetime]:
    known = [g[0].study_date for g in groups if g[0].study_date]
    fallback = known[0] if known else date(2012, 1, 1)
    out = [datetime.combine((g[0].study_date or fallback) + shift, time())
           + timedelta(minutes=int(rng.integers(6 * 60, 22 * 60))) for g in groups]
    return sorted(out)  # studies are in date order; same-day ones keep their order


def _patient(seed: int, index: int, pid: str, rows: list[RealSeries], race: str, icu: bool,
             blank: bool, shift: timedelta, full: bool) -> PatientSpec:
    rng = np.random.default_rng([seed, 11, int(make_uid(seed, pid).split(".")[-1]) % 2**63])
    age, sex = _age(rows, rng), _sex(rows, rng)
    c = draw_clinical(rng, sex, age, icu, blank)
    groups = _studies(rows)
    times = _times(rng, groups, shift)
    diagnosis = times[0] - timedelta(minutes=int(rng.integers(-24 * 60, 30 * 60)))
    studies: list = []
    suffixes: set[str] = set()
    for k, (srows, when, severity) in enumerate(zip(groups, times,
                                                     _severities(rng, len(groups), icu),
                                                     strict=False)):
        uid = _unique(seed, suffixes, pid, "study", k)
        xr = srows[0].modality in ("CR", "DX")
        pool = (T.XR_FINDINGS if xr else T.CT_FINDINGS)[severity]
        finding = pool[int(rng.integers(len(pool)))]
        hours = round((when - diagnosis).total_seconds() / 3600.0, 1)
        when = diagnosis + timedelta(hours=hours)  # the sheet's hours give StudyTime exactly
        span, names = _span(srows), set[str]()
        series = tuple(_series(seed, _unique(seed, names, uid, "series", j), j, r, full, span)
                       for j, r in enumerate(srows))
        studies.append(StudySpec(
            index, k, uid, srows[0].study_description, srows[0].modality, when,
            (when.date() - diagnosis.date()).days, hours, _fio2(rng, severity, icu), finding,
            series, accession_for(uid), "", span))
    return PatientSpec(index, pid, age, sex, race, c.zip, c.bmi, c.weight_lb, c.height_in,
                       c.height_text, c.comorbidities, c.test_name, icu, c.icu_admits,
                       c.mortality, c.genbank, diagnosis, tuple(studies))


def build_twin(skeleton: Skeleton, *, seed: int = 0, full: bool = False,
               patients: int | None = None, xr_size: int = 1024, ct_size: int = 512) -> Cohort:
    """The twin's model (no pixels): same skeleton and arguments, same cohort."""
    if patients is not None and patients < 1:
        raise ValueError("patients must be >= 1")
    if xr_size < 64 or ct_size < 32:
        raise ValueError("xr_size must be >= 64 and ct_size >= 32")
    groups: dict[str, list[RealSeries]] = defaultdict(list)
    for r in skeleton.series:
        groups[r.patient].append(r)
    chosen = _select(groups, patients, seed)
    rng = np.random.default_rng([seed, 12])
    taken = set(groups)  # the real IDs are never drawn
    ids = sorted((synthetic_id(p, rng, taken), p) for p in chosen)
    n = len(ids)
    races = _shuffled(rng, scale_counts(T.RACE_AT_105, n))
    weights = np.array([len(_studies(groups[real])) for _, real in ids], float)
    icu = np.zeros(n, bool)
    icu[rng.choice(n, round(T.ICU_FRACTION * n), replace=False, p=weights / weights.sum())] = True
    blank = np.zeros(n, bool)
    blank[rng.permutation(n)[: round(T.BLANK_BODY_AT_105 * n / T.REFERENCE_PATIENTS)]] = True
    shift = timedelta(weeks=-int(rng.integers(4, 53)))
    built = [_patient(seed, i, pid, groups[real], races[i], bool(icu[i]), bool(blank[i]), shift,
                      full) for i, (pid, real) in enumerate(ids)]
    from .cohort import _blank_fio2
    return Cohort(seed, 0, xr_size, tuple(_blank_fio2(seed, built)), marks_for(skeleton.name),
                  ct_size)
