"""One patient per study, always: what a hostile or careless peer sends, through real SCUs
(pynetdicom for the status and comment, DCMTK `storescu` for what an outside modality does).

Another patient's file reusing a held StudyInstanceUID (or SOP Instance UID) is refused and
quarantined, never filed; UIDs that VR UI cannot hold are refused, never cut; a file cut inside
its pixel data is refused before Success; valid studies still store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlmodel import select

from dicom_node import StorageNode, send_files_detailed, statuses
from priorwatch import quarantine as operator_quarantine
from priorwatch.db import session_scope
from priorwatch.identity import PatientIdentity, conflicts
from priorwatch.models import AuditLog, QuarantinedInstance
from priorwatch.settings import Settings

from .conftest import CR, CT, StudyMaker, wait_for
from .conftest import indexed_instances as _instances
from .conftest import indexed_studies as _studies

HOST = "127.0.0.1"
ALICE = dict(patient_id="PW-ALICE", PatientName="Liddell^Alice", PatientBirthDate="19610203")
BOB = dict(patient_id="PW-BOB", PatientName="Builder^Bob", PatientBirthDate="19770405")


def _quarantine(settings: Settings) -> list[QuarantinedInstance]:
    with session_scope(settings) as s:
        return list(s.exec(select(QuarantinedInstance)))


def _storescu(settings: Settings, node: StorageNode, files: list[Path]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("storescu", path="/usr/bin")
    assert exe is not None, "DCMTK storescu is not installed (scripts/install.sh installs dcmtk)"
    return subprocess.run([exe, "-v", "--no-halt", "-aet", "CR01", "-aec", settings.ae_title, HOST, str(node.port), *map(str, files)],
                          env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=60)


def test_another_patient_reusing_a_study_uid_is_refused_quarantined_and_never_filed(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    alice = maker.study(2, CT, **ALICE)
    uid = dcmread(alice[0], stop_before_pixels=True).StudyInstanceUID
    assert [s for s, _ in send_files_detailed(alice, HOST, node.port, settings.ae_title)] == [0, 0]
    assert wait_for(lambda: _studies(settings)[0].state == "queued", 10)  # closed: a reopen would be version 2
    [bob] = maker.study(1, CT, study_uid=uid, **BOB)

    [(status, comment)] = send_files_detailed([bob], HOST, node.port, settings.ae_title)

    assert status == statuses.PATIENT_MISMATCH == 0xC216
    assert comment == "refused: other patient's study (ID/name/birth date)"
    for phi in ("PW-BOB", "Builder", "1977", "PW-ALICE", "Liddell"):
        assert phi not in comment
    [study] = _studies(settings)
    assert (study.patient_id, study.n_instances, study.version, study.state) == ("PW-ALICE", 2, 1, "queued")
    assert {i.sop_instance_uid for i in _instances(settings)} == {dcmread(p).SOPInstanceUID for p in alice}
    [q] = _quarantine(settings)
    assert (q.study_uid, q.held_study_id, q.differs, q.attempts, q.resolved_at) == (uid, study.id, "ID,name,birth date", 1, None)
    assert Path(q.path).read_bytes()[-64:] == bob.read_bytes()[-64:]  # the file kept, as received
    assert Path(q.path).parent == settings.data_dir / "quarantine"

    # A re-send counts an attempt; it is still refused and keeps one copy.
    [(again, _)] = send_files_detailed([bob], HOST, node.port, settings.ae_title)
    assert again == statuses.PATIENT_MISMATCH
    [q] = _quarantine(settings)
    assert q.attempts == 2
    assert len(list((settings.data_dir / "quarantine").iterdir())) == 1

    with session_scope(settings) as s:
        audit = list(s.exec(select(AuditLog).where(AuditLog.action == "quarantine")))
        listed = operator_quarantine.open_items(s)
    assert [(a.user, a.study_id) for a in audit] == [("node", study.id)]
    assert json.loads(str(audit[0].detail))["differs"] == "ID,name,birth date"
    assert [(i.id, i.differs, i.attempts) for i in listed] == [(q.id, "ID,name,birth date", 2)]


def test_a_reused_sop_instance_uid_of_another_patient_is_not_a_duplicate(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    [alice] = maker.study(1, CT, **ALICE)
    assert send_files_detailed([alice], HOST, node.port, settings.ae_title)[0][0] == 0
    ds = dcmread(alice)
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = BOB["patient_id"], BOB["PatientName"], BOB["PatientBirthDate"]
    ds.StudyInstanceUID = generate_uid()
    bob = maker.root / "bob-same-sop.dcm"
    ds.save_as(bob, enforce_file_format=True)

    [(status, _)] = send_files_detailed([bob], HOST, node.port, settings.ae_title)

    assert status == statuses.PATIENT_MISMATCH
    assert [s.patient_id for s in _studies(settings)] == ["PW-ALICE"]
    assert len(_quarantine(settings)) == 1


def test_same_id_with_another_birth_date_is_refused_and_a_retyped_name_is_not(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    first = maker.study(1, CT, patient_id="PW-CAROL", PatientName="SMITH^CAROL", PatientBirthDate="19500101")
    uid = dcmread(first[0], stop_before_pixels=True).StudyInstanceUID
    retyped = maker.study(1, CT, study_uid=uid, patient_id="PW-CAROL", PatientName="Smith^Carol^Ann",
                          PatientBirthDate="19500101")
    other_dob = maker.study(1, CT, study_uid=uid, patient_id="PW-CAROL", PatientName="Smith^Carol",
                            PatientBirthDate="19500102")

    results = send_files_detailed(first + retyped + other_dob, HOST, node.port, settings.ae_title)

    assert [s for s, _ in results] == [0, 0, statuses.PATIENT_MISMATCH]
    assert results[2][1] == "refused: other patient's study (birth date)"
    [study] = _studies(settings)
    assert study.n_instances == 2


def test_overlong_and_malformed_uids_are_refused_never_cut(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    shared = "1.2.826.0.1.3680043.8.498." + "1" * 60  # > 64 characters; the first 64 shared by both
    alice = maker.study(1, CT, study_uid=shared + ".1" * 60, **ALICE)
    bob = maker.study(1, CT, study_uid=shared + ".2" * 60, **BOB)
    letters = maker.study(1, CT, study_uid="1.2.840.abc.7", **ALICE)
    long_series = maker.study(1, CT, series_uid="1.2." + "3" * 70, **ALICE)
    long_id = maker.study(1, CT, patient_id="P" * 65)

    results = send_files_detailed(alice + bob + letters + long_series + long_id, HOST, node.port, settings.ae_title)

    assert [s for s, _ in results] == [statuses.INVALID_UID] * 4 + [statuses.INVALID_PATIENT_ID]
    assert results[0][1] == "refused: StudyInstanceUID is not a valid UID (VR UI)"
    assert results[3][1] == "refused: SeriesInstanceUID is not a valid UID (VR UI)"
    assert _studies(settings) == []
    assert _instances(settings) == []
    assert list(settings.spool_dir.rglob("*.dcm")) == []


def _cut(path: Path, keep: int) -> Path:
    out = path.with_name(path.stem + f"-cut{keep}.dcm")
    out.write_bytes(path.read_bytes()[:keep])
    return out


def test_a_file_cut_inside_its_pixel_data_is_refused_before_success(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    [whole] = maker.study(1, CR)
    size = whole.stat().st_size
    cut = _cut(whole, size - 3_000_000)  # the element says 7.2 MB, 4.2 MB arrive
    [short] = maker.study(1, CT)  # consistent length field, but fewer bytes than Rows x Columns
    ds = dcmread(short)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(short, enforce_file_format=True)
    [ok] = maker.study(1, CT)

    results = send_files_detailed([cut, short, ok], HOST, node.port, settings.ae_title)

    assert [s for s, _ in results] == [statuses.PIXEL_DATA_INCOMPLETE, statuses.PIXEL_DATA_INCOMPLETE, 0]
    assert results[0][1] == "refused: pixel data incomplete (shorter than its length)"
    assert results[1][1] == "refused: pixel data incomplete (less than the image size)"
    assert [i.sop_instance_uid for i in _instances(settings)] == [dcmread(ok).SOPInstanceUID]


def test_an_image_cut_inside_its_header_before_the_image_module_is_refused(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    """Identifiers arrive, Rows/Columns/Pixel Data do not: an image SOP class needs its pixels."""
    [ct] = maker.study(1, CT)
    raw = ct.read_bytes()
    cut = _cut(ct, raw.index(b"\x28\x00\x10\x00"))  # just before Rows (0028,0010)
    assert dcmread(cut, stop_before_pixels=True).StudyInstanceUID  # the identifiers are all there

    [(status, comment)] = send_files_detailed([cut], HOST, node.port, settings.ae_title)

    assert (status, comment) == (statuses.PIXEL_DATA_INCOMPLETE, "refused: pixel data incomplete (no pixel data element)")
    assert _instances(settings) == []


def test_encapsulated_pixel_data_without_its_last_fragment_is_refused(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    [j2k] = maker.study(1, "RG1_J2KR.dcm")
    raw = j2k.read_bytes()
    cut = _cut(j2k, len(raw) - 1000)  # inside the last fragment, no sequence delimiter
    no_delimiter = _cut(j2k, len(raw) - 8)  # the fragments whole, the delimiter missing

    results = send_files_detailed([cut, no_delimiter, j2k], HOST, node.port, settings.ae_title)

    assert [c for _, c in results[:2]] == ["refused: pixel data incomplete (last fragment cut)",
                                          "refused: pixel data incomplete (no sequence delimiter)"]
    assert [s for s, _ in results] == [statuses.PIXEL_DATA_INCOMPLETE] * 2 + [0]


def test_dcmtk_storescu_intruder_is_refused_and_a_valid_study_stores(
        node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    alice = maker.study(2, CT, **ALICE)
    uid = dcmread(alice[0], stop_before_pixels=True).StudyInstanceUID
    bob = maker.study(1, CT, study_uid=uid, **BOB)
    valid = maker.study(1, CR, patient_id="PW-DAVE")

    proc = _storescu(settings, node, alice + bob + valid)

    responses = [line.split("(", 1)[1] for line in proc.stderr.splitlines() if "Received Store Response" in line]
    assert responses == ["Success)", "Success)", "Error: CannotUnderstand)", "Success)"]
    assert sorted((s.patient_id, s.n_instances) for s in _studies(settings)) == [("PW-ALICE", 2), ("PW-DAVE", 1)]
    assert len(_quarantine(settings)) == 1


@pytest.mark.parametrize(("held", "incoming", "differs"), [
    (PatientIdentity("A1"), PatientIdentity("A1"), ()),
    (PatientIdentity("A1"), PatientIdentity("A2"), ("ID",)),
    (PatientIdentity("A1", "HOSP"), PatientIdentity("A1", "OTHER"), ("issuer",)),
    (PatientIdentity("A1", "HOSP"), PatientIdentity("A1", ""), ()),  # an issuer one sender omits
    (PatientIdentity("A1", name="DOE^JOHN"), PatientIdentity("A1", name="Doe^John^Q^^Jr"), ()),
    (PatientIdentity("A1", name="DOE^JOHN"), PatientIdentity("A1", name="DOE"), ()),
    (PatientIdentity("A1", name="DOE^JOHN"), PatientIdentity("A1", name="DOE^JANE"), ("name",)),
    (PatientIdentity("A1", name="DOE^JOHN=ドウ"), PatientIdentity("A1", name="ROE^JOHN"), ("name",)),
    (PatientIdentity("A1", birth_date=dt.date(1960, 1, 1)), PatientIdentity("A1", birth_date=None), ()),
    (PatientIdentity("A1", birth_date=dt.date(1960, 1, 1)), PatientIdentity("A1", birth_date=dt.date(1960, 1, 2)),
     ("birth date",)),
])
def test_identity_rule_table(held: PatientIdentity, incoming: PatientIdentity, differs: tuple[str, ...]) -> None:
    assert conflicts(held, incoming) == differs


def test_priors_retrieved_from_a_pacs_meet_the_same_checks(settings: Settings, maker: StudyMaker) -> None:
    """C-GET and WADO-RS hand whole Part-10 files to `Ingest.store` (no C-STORE): the same
    refusals hold there."""
    from dicom_node.ingest import Ingest

    ingest = Ingest(settings)
    alice = maker.study(1, CT, **ALICE)
    uid = dcmread(alice[0], stop_before_pixels=True).StudyInstanceUID
    [bob] = maker.study(1, CT, study_uid=uid, **BOB)
    [whole] = maker.study(1, CR, patient_id="PW-ERIN")
    sink = ingest.sink(role="prior", calling_ae="PACS")

    statuses_seen = [sink(alice[0].read_bytes()), sink(bob.read_bytes()),
                     sink(whole.read_bytes()[:-2_000_000])]

    assert statuses_seen == [0, statuses.PATIENT_MISMATCH, statuses.PIXEL_DATA_INCOMPLETE]
    assert [(s.patient_id, s.n_instances) for s in _studies(settings)] == [("PW-ALICE", 1)]
    assert [q.role for q in _quarantine(settings)] == ["prior"]
