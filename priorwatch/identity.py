"""Is this the same patient? One rule for the node (an instance joining a held study) and the
worker (a prior retrieved from a PACS).

PatientID and its issuer decide; name and birth date are a second check, because a modality
that reuses a StudyInstanceUID, or a PACS that answers for the wrong patient, may well carry
a plausible ID. The second check compares only what both sides have, and names loosely
(case, spacing, middle names and suffixes ignored), so a re-sent study with a name typed
differently is not refused, while another person's name or birth date is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

# The identifiers a conflict can name, in the order they are reported. Codes, never values: they
# go into C-STORE ErrorComments, logs and the quarantine list, which must carry no PHI.
PATIENT_ID, ISSUER, NAME, BIRTH_DATE = "ID", "issuer", "name", "birth date"

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    patient_id: str
    issuer: str = ""
    name: str = ""
    birth_date: date | None = None


def _name_key(name: str) -> tuple[str, str]:
    """(family, first given name), upper case: the parts two spellings of one person share.

    DICOM PN is family^given^middle^prefix^suffix, optionally followed by `=` ideographic and
    phonetic groups; only the alphabetic group is compared."""
    alphabetic = name.split("=", 1)[0]
    parts = [_SPACES.sub(" ", p).strip().upper() for p in alphabetic.split("^")]
    family = parts[0] if parts else ""
    given = parts[1].split(" ")[0] if len(parts) > 1 and parts[1] else ""
    return family, given


def conflicts(held: PatientIdentity, incoming: PatientIdentity) -> tuple[str, ...]:
    """The identifiers on which `incoming` is another patient than `held` (empty: the same)."""
    out: list[str] = []
    if held.patient_id.strip() != incoming.patient_id.strip():
        out.append(PATIENT_ID)
    if held.issuer.strip() and incoming.issuer.strip() and held.issuer.strip() != incoming.issuer.strip():
        out.append(ISSUER)
    a, b = _name_key(held.name), _name_key(incoming.name)
    if a[0] and b[0] and (a[0] != b[0] or (a[1] and b[1] and a[1] != b[1])):
        out.append(NAME)
    if held.birth_date and incoming.birth_date and held.birth_date != incoming.birth_date:
        out.append(BIRTH_DATE)
    return tuple(out)
