"""The Storage SCP against real peers (pynetdicom SCU, DCMTK storescu): what is stored, when
success is answered, and the specific failure for each kind of bad input."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlmodel import select

from dicom_node import StorageNode, echo, send_files, send_files_detailed, statuses
from priorwatch.db import session_scope
from priorwatch.models import Instance, Job, Study
from priorwatch.settings import Settings

from .conftest import CR, CT, StudyMaker, broker_messages, make_settings, wait_for
from .conftest import indexed_instances as _instances
from .conftest import indexed_studies as _studies

HOST = "127.0.0.1"


def _spool_files(settings: Settings) -> list[Path]:
    return sorted(settings.spool_dir.rglob("*.dcm"))


def test_echo_answers_success(node: StorageNode, settings: Settings) -> None:
    assert echo(HOST, node.port, settings.ae_title) == 0


def test_store_indexes_before_success(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    files = maker.study(2, CT) + maker.study(1, CR)
    ae = AE(ae_title="MODALITY")
    ae.maximum_pdu_size = 0
    for p in files:
        meta = dcmread(p, stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
    assoc = ae.associate(HOST, node.port, ae_title=settings.ae_title)
    assert assoc.is_established
    try:
        for p in files:
            ds = dcmread(p, stop_before_pixels=True)
            rsp = assoc.send_c_store(p)
            assert rsp.Status == 0x0000
            # At the moment the SCU holds the success response, the file is whole on disk and
            # the row is in the index (read through a fresh session).
            with session_scope(settings) as s:
                row = s.exec(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID)).one()
            target = Path(row.path)
            assert target.is_file() and target.parent.parent == settings.spool_dir
            assert row.size == target.stat().st_size
            # The data set is stored byte for byte as sent.
            sent = dcmread(p)
            got = dcmread(target)
            assert got.PixelData == sent.PixelData
            assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    finally:
        assoc.release()
    assert not list(settings.spool_dir.rglob("*.part"))


def test_header_metadata_is_indexed(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    [p] = maker.study(1, CR, patient_id="PW-7", IssuerOfPatientID="HOSP", AccessionNumber="ACC1",
                      RequestedProcedureDescription="cough, fever", ViewPosition="PA")
    assert send_files([p], HOST, node.port, settings.ae_title) == [0]
    [study] = _studies(settings)
    [inst] = _instances(settings)
    src = dcmread(p, stop_before_pixels=True)
    assert (study.patient_id, study.issuer, study.accession) == ("PW-7", "HOSP", "ACC1")
    assert study.patient_name == "Test^Patient"
    assert study.modality == "CR" and study.body_part == src.BodyPartExamined
    assert study.reason == "cough, fever"
    assert study.study_date is not None and study.study_date.strftime("%Y%m%d") == src.StudyDate
    assert study.calling_ae == "PW_SCU" and study.role == "incoming" and study.n_instances == 1
    assert (inst.rows, inst.columns) == (1955, 1841)
    assert inst.view_position == "PA" and inst.photometric == src.PhotometricInterpretation
    assert inst.pixel_spacing == pytest.approx(float(src.get("ImagerPixelSpacing", src.get("PixelSpacing"))[0]))
    assert inst.sop_class_uid == src.SOPClassUID and inst.transfer_syntax == src.file_meta.TransferSyntaxUID
    assert inst.manufacturer == src.Manufacturer


def test_resent_instance_stored_once(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    files = maker.study(3)
    assert send_files(files, HOST, node.port, settings.ae_title) == [0, 0, 0]
    assert send_files(files[:2], HOST, node.port, settings.ae_title) == [0, 0]
    assert len(_instances(settings)) == 3
    assert len(_spool_files(settings)) == 3
    [study] = _studies(settings)
    assert study.n_instances == 3 and study.version == 1
    assert node.counts["duplicates"] == 2 and node.counts["stored"] == 3


def test_concurrent_associations_all_indexed(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    studies = [maker.study(5, patient_id=f"PW-C{i}") for i in range(4)]
    results: dict[int, list[int]] = {}

    def send(i: int) -> None:
        results[i] = send_files(studies[i], HOST, node.port, settings.ae_title, calling_ae=f"MOD{i}")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(results[i] == [0] * 5 for i in range(4))
    assert len(_instances(settings)) == 20
    assert sorted(s.n_instances for s in _studies(settings)) == [5, 5, 5, 5]
    assert wait_for(lambda: len(broker_messages(settings)) == 4, 10)


def test_unknown_calling_ae_rejected(tmp_path: Path, maker: StudyMaker, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, allowed_calling_aes=["MODALITY"])
    files = maker.study(1)
    with StorageNode(settings) as node:
        with caplog.at_level(logging.ERROR, logger="pynetdicom"):
            assert send_files(files, HOST, node.port, settings.ae_title, calling_ae="STRANGER") == [-1]
        assert "Calling AE title not recognised" in caplog.text
        assert echo(HOST, node.port, settings.ae_title, calling_ae="STRANGER") is None
        assert _instances(settings) == []
        assert send_files(files, HOST, node.port, settings.ae_title, calling_ae="MODALITY") == [0]
        assert len(_instances(settings)) == 1


def _assert_nothing_stored(settings: Settings) -> None:
    assert _instances(settings) == [] and _studies(settings) == []
    assert _spool_files(settings) == [] and not list(settings.spool_dir.rglob("*.part"))


def test_not_dicom_gets_c210(node: StorageNode, settings: Settings, maker: StudyMaker, tmp_path: Path) -> None:
    [good] = maker.study(1)
    raw = good.read_bytes()
    ds = dcmread(good, stop_before_pixels=True)
    # Keep the preamble and a valid file meta group; replace the data set with garbage.
    meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")
    bad = tmp_path / "garbage.dcm"
    bad.write_bytes(raw[:meta_end] + bytes(range(256)) * 40)
    assert dcmread(bad, stop_before_pixels=True, force=True).file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    [(status, comment)] = send_files_detailed([bad], HOST, node.port, settings.ae_title)
    assert status == statuses.NOT_DICOM == 0xC210
    assert "not parseable" in comment
    _assert_nothing_stored(settings)
    assert send_files([good], HOST, node.port, settings.ae_title) == [0]  # still serving


@pytest.mark.parametrize(
    ("keyword", "empty", "expected"),
    [
        ("StudyInstanceUID", False, statuses.MISSING_STUDY_UID),
        ("SeriesInstanceUID", False, statuses.MISSING_SERIES_UID),
        ("SOPInstanceUID", False, statuses.MISSING_SOP_INSTANCE_UID),
        ("PatientID", False, statuses.MISSING_PATIENT_ID),
        ("PatientID", True, statuses.MISSING_PATIENT_ID),
    ],
)
def test_missing_identifier_gets_its_own_status(
    node: StorageNode, settings: Settings, maker: StudyMaker, keyword: str, empty: bool, expected: int
) -> None:
    [bad] = maker.study(1, CT, **{keyword: "" if empty else None})
    header = dcmread(bad, stop_before_pixels=True)
    assert header.get(keyword, "absent") == ("" if empty else "absent")
    [(status, comment)] = send_files_detailed([bad], HOST, node.port, settings.ae_title)
    assert status == expected
    assert keyword in comment
    _assert_nothing_stored(settings)
    [good] = maker.study(1)
    assert send_files([good], HOST, node.port, settings.ae_title) == [0]


def test_missing_identifier_statuses_are_distinct() -> None:
    codes = [code for _, code in statuses.REQUIRED] + [statuses.NOT_DICOM, statuses.MISSING_SOP_CLASS_UID]
    assert len(set(codes)) == len(codes)
    assert all(0xC200 <= c <= 0xC2FF for c in codes)


def test_uid_mismatch_a900(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    [p] = maker.study(1)
    ds = dcmread(p)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # the request will carry this one
    ds.save_as(p, enforce_file_format=False)  # keep the mismatching meta as written
    assert dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID
    [(status, comment)] = send_files_detailed([p], HOST, node.port, settings.ae_title)
    assert status == statuses.DATASET_MISMATCH == 0xA900
    assert "SOP Instance UID" in comment
    _assert_nothing_stored(settings)


def test_storescu_sends_study(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    exe = shutil.which("storescu")
    if exe is None:
        pytest.skip("DCMTK storescu is not installed")
    files = maker.study(3, CT) + maker.study(1, CR)
    env = {**os.environ, "TCP_NODELAY": "1"}
    proc = subprocess.run(
        [exe, "-aet", "SCANNER", "-aec", settings.ae_title, HOST, str(node.port), *map(str, files)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(_instances(settings)) == 4
    assert {s.calling_ae for s in _studies(settings)} == {"SCANNER"}
    # storescu released: both studies close after the grace period, one job each.
    assert wait_for(lambda: len(broker_messages(settings)) == 2, 10)
    with session_scope(settings) as s:
        jobs = list(s.exec(select(Job)))
        studies = list(s.exec(select(Study)))
    assert len(jobs) == 2 and {st.state for st in studies} == {"queued"}


def test_idempotency_key_is_study_and_sorted_sops(node: StorageNode, settings: Settings, maker: StudyMaker) -> None:
    files = maker.study(3)
    assert send_files(files, HOST, node.port, settings.ae_title) == [0, 0, 0]
    assert wait_for(lambda: broker_messages(settings), 10)
    ds = [dcmread(p, stop_before_pixels=True) for p in files]
    expected = hashlib.sha256(
        (ds[0].StudyInstanceUID + "\n".join(sorted(d.SOPInstanceUID for d in ds))).encode()
    ).hexdigest()
    with session_scope(settings) as s:
        [job] = list(s.exec(select(Job)))
    assert job.idempotency_key == expected
    assert broker_messages(settings) == [{"task": "workers.process_study", "args": [job.id]}]
