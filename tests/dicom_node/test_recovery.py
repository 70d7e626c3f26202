"""The Storage SCP's index commits are not fsynced; an unclean stop is recovered from the spool.

`dicom_node.ingest` (module docstring) says what is durable at C-STORE Success: the spool file,
and the committed index row only once a later synced commit or checkpoint covers it. A power
loss can roll back those commits; it cannot be made here, so these tests remove the rows it
would roll back (and the clean-stop marker, which a node that loses power never writes) and
check that the next start puts them back from the files alone.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import delete, text

from dicom_node import StorageNode, recovery, send_files
from dicom_node.ingest import Ingest
from priorwatch.db import get_engine
from priorwatch.models import Instance, Study
from priorwatch.settings import Settings

from .conftest import CT, StudyMaker, indexed_instances, indexed_studies

HOST = "127.0.0.1"
SQLITE_NORMAL, SQLITE_FULL = 1, 2

instance_t = Instance.__table__  # type: ignore[attr-defined]
study_t = Study.__table__  # type: ignore[attr-defined]


def _lose_rows(settings: Settings) -> None:
    """What a power loss before the next synced commit does: the rows are gone, the files stay."""
    with get_engine(settings).begin() as conn:
        conn.execute(delete(instance_t))
        conn.execute(delete(study_t))


def _age_spool(settings: Settings, seconds: float = 60.0) -> None:
    """Date the spool files back: files younger than MIN_AGE_S are left to their writer."""
    t = time.time() - seconds
    for p in settings.spool_dir.rglob("*.dcm"):
        os.utime(p, (t, t))


def test_receive_path_commits_unsynced_everything_else_synced(settings: Settings) -> None:
    node = StorageNode(settings)
    with node.ingest.engine.connect() as a, node.ingest.durable_engine.connect() as b, \
            Ingest(settings).engine.connect() as c:
        modes = [x.execute(text("PRAGMA synchronous")).scalar() for x in (a, b, c)]
    assert modes == [SQLITE_NORMAL, SQLITE_FULL, SQLITE_FULL]


def test_unclean_stop_reindexes_lost_rows_from_the_spool(settings: Settings, maker: StudyMaker) -> None:
    files = maker.study(2, CT, patient_id="PW-REC-1") + maker.study(1, CT, patient_id="PW-REC-2")
    with StorageNode(settings, monitor=False) as node:  # no job: its synced commit would keep the rows
        assert send_files(files[:2], HOST, node.port, settings.ae_title, calling_ae="MODALITY") == [0, 0]
        assert send_files(files[2:], HOST, node.port, settings.ae_title, calling_ae="MODALITY2") == [0]
    before = {_instance(i) for i in indexed_instances(settings)}
    studies = {(s.study_uid, s.patient_id, s.role, s.n_instances, s.calling_ae) for s in indexed_studies(settings)}
    assert len(before) == 3 and recovery.marker(settings).exists()

    _lose_rows(settings)
    recovery.marker(settings).unlink()  # never written: the node lost power
    _age_spool(settings)
    with StorageNode(settings, monitor=False):
        after = {_instance(i) for i in indexed_instances(settings)}
        again = {(s.study_uid, s.patient_id, s.role, s.n_instances, s.calling_ae) for s in indexed_studies(settings)}
        assert not recovery.marker(settings).exists()  # removed before the first association
    assert (after, again) == (before, studies)


def test_clean_stop_leaves_the_spool_unread(settings: Settings, maker: StudyMaker) -> None:
    files = maker.study(1, CT)
    with StorageNode(settings, monitor=False) as node:
        assert send_files(files, HOST, node.port, settings.ae_title, calling_ae="MODALITY") == [0]
    _lose_rows(settings)  # not what a clean stop can lose: shows the spool is not listed then
    _age_spool(settings)
    with StorageNode(settings, monitor=False):
        assert indexed_instances(settings) == []


def test_prior_role_survives_in_the_file(settings: Settings, maker: StudyMaker) -> None:
    """A prior filed because we asked for it (C-MOVE Move Originator) is a prior again after
    recovery, though its calling AE is not a prior source."""
    path = maker.study(1, CT)[0]
    ds = dcmread(path, stop_before_pixels=True)
    raw = path.read_bytes()
    ingest = Ingest(settings, sync_index=False)
    result = ingest.store_dataset(io.BytesIO(raw[_dataset_offset(raw):]),  # as a C-STORE carries it
                                  transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
                                  sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                                  calling_ae="PACS", role="prior")
    assert result.status == 0
    assert [s.role for s in indexed_studies(settings)] == ["prior"]
    _lose_rows(settings)
    _age_spool(settings)
    found = recovery.reindex(ingest, settings.spool_dir)
    assert (found["adopted"], [(s.role, s.calling_ae) for s in indexed_studies(settings)]) == (1, [("prior", "PACS")])


def test_adopting_an_indexed_file_keeps_it(settings: Settings, maker: StudyMaker) -> None:
    """Another writer indexing the very file recovery adopted meets a Duplicate naming that
    file: the file stays (it is the stored copy), as does a re-send's own new file go."""
    ingest = Ingest(settings, sync_index=False)
    raw = maker.study(1, CT)[0].read_bytes()
    assert ingest.store(raw, calling_ae="MODALITY").status == 0
    (stored,) = indexed_instances(settings)
    again = ingest.adopt(Path(stored.path))
    assert (again.duplicate, Path(stored.path).is_file()) == (True, True)
    resent = ingest.store(raw, calling_ae="MODALITY")
    assert resent.duplicate
    assert sorted(p.name for p in settings.spool_dir.rglob("*.dcm")) == [Path(stored.path).name]


def test_young_files_are_left_to_their_writer(settings: Settings, maker: StudyMaker) -> None:
    ingest = Ingest(settings, sync_index=False)
    assert ingest.store(maker.study(1, CT)[0].read_bytes(), calling_ae="MODALITY").status == 0
    _lose_rows(settings)
    found = recovery.reindex(ingest, settings.spool_dir)
    assert (found["too_young"], found["adopted"], indexed_instances(settings)) == (1, 0, [])


def _instance(i: Instance) -> tuple[object, ...]:
    return (i.sop_instance_uid, Path(i.path).name, i.size, i.series_uid, i.sop_class_uid, i.transfer_syntax,
            i.modality, i.rows, i.columns, i.study_version)


def _dataset_offset(raw: bytes) -> int:
    """Where the data set starts in a Part-10 byte string."""
    from pydicom.filereader import _read_file_meta_info, read_preamble  # type: ignore[attr-defined]

    fp = io.BytesIO(raw)
    read_preamble(fp, True)
    _read_file_meta_info(fp)
    return fp.tell()
