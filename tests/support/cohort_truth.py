"""The answers to the cohort questions, computed straight from what synth wrote: the clinical
sheet (CSV) and the DICOM files, without any gateway code (no mapping, no linking, no index).

Imaging rows pair with the patient's studies in time order (hours since diagnosis against
StudyDate + StudyTime): synth writes one row per study, in the same timeline."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pydicom

from tests.support.clinical import read_rows

RACE_CODES = {"WHITE": "2106-3", "BLACK OR AFRICAN AMERICAN": "2054-5", "ASIAN": "2028-9",
              "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER": "2076-8"}  # OTHER: text only
TAGS = ["StudyInstanceUID", "PatientID", "StudyDate", "StudyTime", "Modality", "StudyDescription"]


@dataclass(frozen=True)
class Study:
    uid: str
    patient: str
    date: str
    time: str
    modalities: frozenset[str]

    @property
    def when(self) -> tuple[str, str]:
        return self.date, self.time


@dataclass
class Truth:
    patients: dict[str, dict[str, str]]
    imaging: dict[str, list[dict[str, str]]]   # per patient, in time order
    studies: dict[str, list[Study]]            # per patient, in time order

    @classmethod
    def load(cls, clinical_csv: Path, imaging_csv: Path, dicom_root: Path) -> Truth:
        patients = {r["patient_id"]: r for r in read_rows(clinical_csv)}
        imaging: dict[str, list[dict]] = defaultdict(list)
        for row in read_rows(imaging_csv):
            imaging[row["patient_id"]].append(row)
        found: dict[str, dict] = {}
        for path in sorted(dicom_root.rglob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)
            study = found.setdefault(ds.StudyInstanceUID, {
                "patient": str(ds.PatientID), "date": str(ds.StudyDate),
                "time": str(ds.get("StudyTime", "")), "modalities": set()})
            study["modalities"].add(str(ds.Modality))
        studies: dict[str, list[Study]] = defaultdict(list)
        for uid, s in found.items():
            studies[s["patient"]].append(Study(uid, s["patient"], s["date"], s["time"],
                                               frozenset(s["modalities"])))
        for pid in studies:
            studies[pid].sort(key=lambda s: (s.when, s.uid))
        for pid in imaging:
            imaging[pid].sort(key=lambda r: float(r["diagnosis_to_imaging_time_hrs"]))
        return cls(patients, dict(imaging), dict(studies))

    # --------------------------------------------------------------- facts
    def flag(self, pid: str, column: str) -> bool:
        return self.patients[pid][column].strip().upper() == "Y"

    def icu(self, pid: str) -> bool:
        """An ICU stay (Encounter) exists: admitted, and a stay count that is blank or > 0."""
        count = self.patients[pid]["icu_admits"].strip()
        return self.flag(pid, "icu_admit") and (not count or int(float(count)) > 0)

    def bmi(self, pid: str) -> float | None:
        text = self.patients[pid]["latest_bmi"].strip()
        return float(text) if text else None

    def all_studies(self) -> list[Study]:
        return [s for pid in sorted(self.studies) for s in self.studies[pid]]

    def paired(self) -> list[tuple[dict, Study]]:
        """(imaging row, its study) for every patient whose rows and studies correspond."""
        out = []
        for pid, rows in self.imaging.items():
            studies = self.studies.get(pid, [])
            assert len(rows) == len(studies), pid
            out += list(zip(rows, studies))
        return out

    # ------------------------------------------------------------ questions
    def q1_ct_of_diabetic_icu(self) -> set[str]:
        return {s.uid for s in self.all_studies() if "CT" in s.modalities
                and self.flag(s.patient, "diabetes_type_ii") and self.icu(s.patient)}

    def q2_radiographs_of_deceased(self) -> set[str]:
        return {s.uid for s in self.all_studies() if s.modalities & {"DX", "CR"}
                and self.flag(s.patient, "mortality")}

    def q3_ckd_deceased(self) -> int:
        return sum(1 for pid in self.patients
                   if self.flag(pid, "chronic_kidney_disease") and self.flag(pid, "mortality"))

    def q4_icu_mortality_by_race(self) -> dict[str | None, int]:
        """Per race code (None: no OMB code, i.e. OTHER), patients with an ICU stay who died."""
        counts: dict[str | None, int] = {code: 0 for code in RACE_CODES.values()} | {None: 0}
        for pid, row in self.patients.items():
            if self.icu(pid) and self.flag(pid, "mortality"):
                counts[RACE_CODES.get(row["race"].strip().upper())] += 1
        return counts

    def q5_fio2_at_least(self, percent: float) -> set[str]:
        return {s.uid for row, s in self.paired()
                if row["fio2_time_of_img_study"].strip()
                and float(row["fio2_time_of_img_study"].rstrip("%")) >= percent}

    def q6_radiographs_bmi_at_least(self, bmi: float) -> list[Study]:
        """Chest radiographs of patients with BMI >= bmi, by patient then date (and time)."""
        return [s for s in self.all_studies() if s.modalities & {"DX", "CR"}
                and (self.bmi(s.patient) or 0) >= bmi]

    def q8_reports_mentioning(self, *phrases: str) -> list[tuple[str, str]]:
        """(patient, findings) of the imaging rows whose findings mention a phrase."""
        out = []
        for pid, rows in self.imaging.items():
            for row in rows:
                text = " ".join(row["radiologist_key_findings"].lower().split())
                if text and any(p in text for p in phrases):
                    out.append((pid, text))
        return sorted(out)


def first_per_patient(studies: list, patient_of) -> list:
    """The first of each patient's items in a list sorted by patient then date."""
    seen, out = set(), []
    for item in studies:
        pid = patient_of(item)
        if pid not in seen:
            seen.add(pid)
            out.append(item)
    return out
