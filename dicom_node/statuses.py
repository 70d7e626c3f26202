"""C-STORE status codes the node answers with, each with the ErrorComment it sends.

Success and the standard refusals come from PS3.4 Annex B; the 0xC2xx "cannot understand"
range is ours, one code per missing identifier so a sender's log says exactly what is wrong.
"""

from __future__ import annotations

SUCCESS = 0x0000

#: Refused: out of resources (disk full, or any OS error writing the spool).
OUT_OF_RESOURCES = 0xA700
#: Refused: out of resources (the index database could not be written).
INDEX_UNAVAILABLE = 0xA701
#: Error: data set does not match SOP class (here: its SOP Instance UID is not the request's).
DATASET_MISMATCH = 0xA900
#: Error: cannot understand (not parseable as DICOM).
NOT_DICOM = 0xC210
MISSING_STUDY_UID = 0xC211
MISSING_SERIES_UID = 0xC212
MISSING_SOP_INSTANCE_UID = 0xC213
MISSING_PATIENT_ID = 0xC214
MISSING_SOP_CLASS_UID = 0xC215
#: Refused: the StudyInstanceUID is already held for another patient (PatientID/issuer, name or
#: birth date differ). The instance is kept in quarantine for an operator, never filed.
PATIENT_MISMATCH = 0xC216
#: Refused: a UID violates VR UI (over 64 characters, or not digits and dots). Never cut: two
#: over-long UIDs sharing their first 64 characters would merge two studies.
INVALID_UID = 0xC217
#: Refused: the pixel data is shorter than its header says (a file cut in transfer or on disk).
PIXEL_DATA_INCOMPLETE = 0xC218
#: Refused: PatientID or IssuerOfPatientID longer than VR LO allows (64); never cut.
INVALID_PATIENT_ID = 0xC219

#: The identifiers every instance must carry, in the order they are checked.
REQUIRED: tuple[tuple[str, int], ...] = (
    ("StudyInstanceUID", MISSING_STUDY_UID),
    ("SeriesInstanceUID", MISSING_SERIES_UID),
    ("SOPInstanceUID", MISSING_SOP_INSTANCE_UID),
    ("PatientID", MISSING_PATIENT_ID),
)

MESSAGES: dict[int, str] = {
    SUCCESS: "stored",
    OUT_OF_RESOURCES: "out of resources: could not write the instance to the spool",
    INDEX_UNAVAILABLE: "out of resources: could not index the instance",
    DATASET_MISMATCH: "SOP Instance UID in the data set differs from the request's",
    NOT_DICOM: "cannot understand: the data set is not parseable DICOM",
    MISSING_STUDY_UID: "cannot understand: StudyInstanceUID (0020,000D) is missing or empty",
    MISSING_SERIES_UID: "cannot understand: SeriesInstanceUID (0020,000E) is missing or empty",
    MISSING_SOP_INSTANCE_UID: "cannot understand: SOPInstanceUID (0008,0018) is missing or empty",
    MISSING_PATIENT_ID: "cannot understand: PatientID (0010,0020) is missing or empty",
    MISSING_SOP_CLASS_UID: "cannot understand: SOPClassUID (0008,0016) is missing or empty",
    PATIENT_MISMATCH: "refused: other patient's study (quarantined)",
    INVALID_UID: "refused: a UID is not a valid VR UI (length or characters)",
    PIXEL_DATA_INCOMPLETE: "refused: pixel data incomplete (shorter than its header says)",
    INVALID_PATIENT_ID: "refused: PatientID or its issuer is longer than 64 characters",
}


def is_success(status: int) -> bool:
    return status == SUCCESS


def describe(status: int) -> str:
    return MESSAGES.get(status, f"status 0x{status:04X}")


class IngestError(Exception):
    """An instance the node refuses, with the C-STORE status and ErrorComment to answer."""

    def __init__(self, status: int, comment: str | None = None) -> None:
        self.status = status
        self.comment = comment or describe(status)
        super().__init__(f"0x{status:04X} {self.comment}")
