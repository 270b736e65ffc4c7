"""Reference tables of the synthetic COVID-19-AR cohorts, kept as data.

Counts marked ``_AT_105`` are the real collection's marginals for its 105 patients; the cohort model
scales them to other sizes with largest-remainder rounding, so N=105 reproduces them exactly.
Prevalences and weights are plausible values for a 2020 Arkansas COVID-19 inpatient cohort, not
measured ones: the generator needs realistic shapes, not the real patients.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_PATIENTS = 105
COVID_19_AR_DOI = "10.7937/tcia.2020.py71-5978"
XR_STUDIES_AT_105 = 233
CT_STUDIES_AT_105 = 23
SEX_AT_105: dict[str, int] = {"M": 53, "F": 52}
RACE_AT_105: dict[str, int] = {
    "WHITE": 40,
    "BLACK OR AFRICAN AMERICAN": 57,
    "ASIAN": 1,
    "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER": 1,
    "OTHER": 6,
}
AGE_RANGE = (19, 91)
AGE_MEAN, AGE_SD = 57.0, 16.0
ICU_FRACTION = 0.30
BLANK_BODY_AT_105 = 2  # patients with no recorded height (and so no BMI), as the real sheet has
BLANK_FIO2_AT_105 = 1  # imaging rows without an FiO2 value

# Arkansas 3-digit ZIP prefixes 716-729, weighted towards central Arkansas (Little Rock area).
ZIP_WEIGHTS: dict[str, float] = {
    "716": 2, "717": 2, "718": 1, "719": 3, "720": 10, "721": 6, "722": 12,
    "723": 2, "724": 3, "725": 2, "726": 2, "727": 3, "728": 3, "729": 2,
}

# Comorbidity columns in the data-dictionary order, with a plausible prevalence.
COMORBIDITIES: dict[str, float] = {
    "tuberculosis": 0.01,
    "systemic_lupus_erythmatosus": 0.02,
    "rheumatoid_arthritis": 0.03,
    "extensive_burns": 0.002,
    "asplenia": 0.01,
    "hyposplenia": 0.005,
    "measles": 0.002,
    "cytomegalovirus": 0.01,
    "chicken_pox": 0.01,
    "herpes_zoster": 0.02,
    "malnutrition": 0.05,
    "current_pregnant": 0.0,  # drawn separately: women 19-45 only
    "chronic_kidney_disease": 0.18,
    "diabetes_type_i": 0.02,
    "diabetes_type_ii": 0.35,
    "transplant": 0.02,
    "hemodialysis_pre_diagnosis": 0.04,
    "hemodialysis_post_diagnosis": 0.03,
    "cancer": 0.10,
}
PREGNANT_PREVALENCE = 0.12  # among women aged 19-45

TEST_NAMES: dict[str, float] = {
    "SARS-COV-2 RNA (COVID-19), QUALITATIVE NAAT": 6,
    "SARS-COV-2 (COVID-19) RNA, RT-PCR": 3,
    "COVID-19 RAPID PCR": 1,
}
GENBANK_FRACTION = 0.3
GENBANK_PREFIX = "MW"

# Patients-sheet columns: (normalised name, original header), data-dictionary order.
PATIENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient_id", "PATIENT_ID"), ("age", "AGE"), ("sex", "SEX"), ("race", "RACE"), ("zip", "ZIP"),
    ("latest_bmi", "LATEST BMI"), ("latest_weight", "LATEST WEIGHT"),
    ("latest_height", "LATEST HEIGHT"),
    ("tuberculosis", "TUBERCULOSIS"),
    ("systemic_lupus_erythmatosus", "SYSTEMIC LUPUS ERYTHMATOSUS"),
    ("rheumatoid_arthritis", "RHEUMATOID ARTHRITIS"), ("extensive_burns", "EXTENSIVE BURNS"),
    ("asplenia", "ASPLENIA"), ("hyposplenia", "HYPOSPLENIA"), ("measles", "MEASLES"),
    ("cytomegalovirus", "CYTOMEGALOVIRUS"), ("chicken_pox", "CHICKEN POX"),
    ("herpes_zoster", "HERPES ZOSTER"), ("malnutrition", "MALNUTRITION"),
    ("current_pregnant", "CURRENT PREGNANT"), ("chronic_kidney_disease", "CHRONIC KIDNEY DISEASE"),
    ("diabetes_type_i", "DIABETES TYPE I"), ("diabetes_type_ii", "DIABETES TYPE II"),
    ("transplant", "TRANSPLANT"), ("hemodialysis_pre_diagnosis", "HEMODIALYSIS PRE-DIAGNOSIS"),
    ("hemodialysis_post_diagnosis", "HEMODIALYSIS POST-DIAGNOSIS"), ("cancer", "CANCER"),
    ("covid_test_positive", "COVID TEST POSITIVE"), ("test_name", "TEST_NAME"),
    ("icu_admit", "ICU Admit"), ("icu_admits", "# ICU admits"), ("mortality", "MORTALITY"),
    ("genbank_accession", "GENBANK ACCESSION"),
)
# Grouping row above the real header row: (first column of the group, title).
PATIENT_GROUPS: tuple[tuple[str, str], ...] = (
    ("patient_id", "DEMOGRAPHICS"), ("latest_bmi", "BODY HABITUS"),
    ("tuberculosis", "COMORBIDITIES"), ("covid_test_positive", "COVID-19 TESTING"),
    ("icu_admit", "OUTCOMES"), ("genbank_accession", "SEQUENCING"),
)
IMAGING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient_id", "PATIENT_ID"),
    ("diag_to_img_study_days", "DIAG TO IMG STUDY (DAYS)"),
    ("diagnosis_to_imaging_time_hrs", "DIAGNOSIS TO IMAGING TIME (HRS)"),
    ("image_study_description", "IMAGE STUDY DESCRIPTION"),
    ("study_modality", "STUDY MODALITY"),
    ("fio2_time_of_img_study", "FIO2 @ TIME OF IMG STUDY"),
    ("radiologist_key_findings", "RADIOLOGIST KEY FINDINGS"),
)
IMAGING_GROUPS: tuple[tuple[str, str], ...] = (
    ("patient_id", "IMAGING STUDIES"), ("fio2_time_of_img_study", "CLINICAL CONTEXT"),
)
SHEET_TITLES = ("Clinical Data", "Imaging Data")


@dataclass(frozen=True)
class XrStudyType:
    """A radiograph study description and the view of each of its series (one image each)."""

    description: str
    views: tuple[str, ...]
    ward_weight: float
    icu_weight: float


XR_STUDY_TYPES: tuple[XrStudyType, ...] = (
    XrStudyType("XR CHEST AP PORTABLE", ("AP",), 5.0, 9.0),
    XrStudyType("XR CHEST AP ONLY", ("AP",), 1.5, 1.0),
    XrStudyType("XR CHEST PA AND LATERAL", ("PA", "LL"), 2.0, 0.0),
    XrStudyType("XR CHEST PA ONLY", ("PA",), 1.0, 0.0),
)
VIEW_SERIES_DESCRIPTION = {"AP": "AP", "PA": "PA", "LL": "LATERAL"}
# ViewCodeSequence codes, PS3.16 CID 4010 DX View (SNOMED CT).
VIEW_CODES: dict[str, tuple[str, str, str]] = {
    "AP": ("399348003", "SCT", "antero-posterior"),
    "PA": ("272479007", "SCT", "postero-anterior"),
    "LL": ("399173006", "SCT", "left lateral"),
}
CT_STUDY_TYPES: dict[str, float] = {
    "CT CHEST WITHOUT CONTRAST": 4.0,
    "CT CHEST HIGH RESOLUTION WITHOUT CONTRAST": 1.0,
}
CT_COVERAGE_MM = 320.0
CT_PIXEL_SPACING_MM = 0.7
CT_TOP_Z_MM = -40.0


@dataclass(frozen=True)
class Finding:
    """A radiologist key finding and where its opacity lies, so pixels can agree with the text.

    ``density`` runs from 0 (clear) through ~0.3 (ground glass, about -600 HU on CT) to 1
    (consolidation, soft-tissue density); ``zones`` are thirds of the lung height.
    """

    text: str
    sides: str = ""
    zones: tuple[str, ...] = ()
    density: float = 0.0
    peripheral: bool = False


ALL_ZONES = ("upper", "mid", "lower")
XR_FINDINGS: tuple[tuple[Finding, ...], ...] = (
    (
        Finding("No acute cardiopulmonary process"),
        Finding("No acute cardiopulmonary abnormality"),
        Finding("Clear lungs. No focal consolidation, pleural effusion or pneumothorax"),
    ),
    (
        Finding("Mild bilateral interstitial opacities, lower lung predominant", "RL", ("lower",),
                0.2),
        Finding("Subtle left lower lobe opacity", "L", ("lower",), 0.25),
        Finding("Right lower lobe patchy opacity, atelectasis versus early pneumonia", "R",
                ("lower",), 0.3),
    ),
    (
        Finding("Bilateral patchy airspace disease involving both mid and lower lung zones", "RL",
                ("mid", "lower"), 0.45, True),
        Finding("Bilateral peripheral airspace opacities, lower lung predominant, compatible with "
                "viral pneumonia", "RL", ("lower",), 0.45, True),
        Finding("Right lower lobe consolidation", "R", ("lower",), 0.85),
        Finding("Left lower lobe consolidation", "L", ("lower",), 0.85),
        Finding("Right upper lobe airspace opacity", "R", ("upper",), 0.55),
    ),
    (
        Finding("Diffuse bilateral airspace opacities, consistent with ARDS", "RL", ALL_ZONES,
                0.75),
        Finding("Worsening multifocal bilateral airspace disease with dense lower lobe "
                "consolidation", "RL", ("mid", "lower"), 0.85),
        Finding("Extensive bilateral opacities involving all lung zones; support lines and tubes "
                "in place", "RL", ALL_ZONES, 0.7),
    ),
)
CT_FINDINGS: tuple[tuple[Finding, ...], ...] = (
    (Finding("No acute intrathoracic abnormality"),),
    (Finding("Few peripheral ground-glass opacities in the lower lobes", "RL", ("lower",), 0.25,
             True),),
    (
        Finding("Bilateral peripheral ground-glass opacities, lower lobe predominant, typical of "
                "COVID-19 pneumonia", "RL", ("mid", "lower"), 0.3, True),
        Finding("Multifocal bilateral ground-glass opacities with crazy paving", "RL", ALL_ZONES,
                0.33),
    ),
    (
        Finding("Diffuse bilateral ground-glass and consolidative opacities", "RL", ALL_ZONES, 0.6),
        Finding("Bilateral ground-glass opacities with dense consolidation in the dependent lower "
                "lobes", "RL", ("lower",), 0.8),
    ),
)
# Peak severity (index into the findings tables) for ward and ICU patients.
WARD_SEVERITY_WEIGHTS = (0.35, 0.35, 0.30, 0.0)
ICU_SEVERITY_WEIGHTS = (0.0, 0.05, 0.35, 0.60)
# FiO2 (%) at imaging time by severity: room air, nasal cannula, high flow / ventilated.
FIO2_CHOICES: tuple[tuple[int, ...], ...] = (
    (21,), (21, 21, 25, 28), (28, 32, 36, 40, 44), (50, 60, 70, 80, 90, 100),
)

# Real TCIA de-identification: PS3.15 Annex E profile and options, coded per PS3.16 CID 7050.
DEID_METHOD = "Per DICOM PS 3.15 AnnexE. Details in 0012,0064"
DEID_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113101", "Clean Pixel Data Option"),
    ("113104", "Clean Structured Content Option"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113109", "Retain Device Identity Option"),
)
# Shifted dates: TCIA moves each patient's dates by a per-patient offset, keeping intervals.
DIAGNOSIS_WINDOW = ("2020-03-10", 130)  # first real diagnosis date, window length in days
DATE_SHIFT_DAYS = (-3650, -365)

XR_EQUIPMENT: dict[str, tuple[str, str]] = {
    "DX": ("Carestream Health", "DRX-Revolution"),
    "CR": ("FUJIFILM Corporation", "FCR PROFECT"),
}
CT_EQUIPMENT = ("SIEMENS", "SOMATOM Definition AS")
