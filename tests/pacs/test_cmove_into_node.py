"""Priors pulled from a real Orthanc into our real node: C-MOVE to the Storage SCP, C-GET into
the ingest sink. What arrives because we asked for it is filed as a prior and never starts a job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from sqlmodel import select

from dicom_node import CompletionMonitor, Ingest, StorageNode
from dicom_node.pacs import PacsConfig, PacsError
from dicom_node.retrieve import CGetRetriever, CMoveRetriever
from priorwatch.db import session_scope
from priorwatch.models import Instance, Job, Study, StudyRole, StudyState
from priorwatch.settings import Settings
from tests.conftest import free_port, require_binary
from tests.pacs.conftest import NODE_AE, write_study
from tests.peers import Orthanc


@dataclass
class Pacs:
    orthanc: Orthanc
    node_port: int
    move_study: str
    get_study: str
    cr_study: str
    files: dict[str, list[Path]]

    @property
    def config(self) -> PacsConfig:
        return PacsConfig(ae_title=self.orthanc.aet, port=self.orthanc.dicom_port, timeout_s=30)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    require_binary("Orthanc")
    tmp = tmp_path_factory.mktemp("cmove")
    files = tmp / "files"
    files.mkdir()
    common = dict(patient_id="PW-MOVE-1", issuer="HOSP-A", modality="CT", body="CHEST")
    move_study, f1 = write_study("CT_small.dcm", files, date="20240101", n=3, **common)  # type: ignore[arg-type]
    get_study, f2 = write_study("CT_small.dcm", files, date="20240601", n=3, **common)  # type: ignore[arg-type]
    cr_study, f3 = write_study("RG1_UNCR.dcm", files, patient_id="PW-MOVE-1", issuer="HOSP-A", date="20230101",
                               modality="CR", body="CHEST", n=1)
    node_port = free_port()  # Orthanc must know our node's real address for C-MOVE
    orthanc = Orthanc(tmp / "orthanc", modalities={"priorwatch": (NODE_AE, "127.0.0.1", node_port)})
    orthanc.start()
    try:
        for paths in (f1, f2, f3):
            for p in paths:
                orthanc.upload(p)
        yield Pacs(orthanc, node_port, move_study, get_study, cr_study, {move_study: f1, get_study: f2, cr_study: f3})
    finally:
        orthanc.stop()


def _settings(tmp: Path, port: int, orthanc_aet: str) -> Settings:
    s = Settings(data_dir=tmp / "data", dicom_port=port, ae_title=NODE_AE, prior_source_aes=[orthanc_aet],
                 completion_grace_s=0.3, monitor_interval_s=0.1, quiet_period_s={"default": 0.3},
                 receive_processes=1)  # node.counts are per process
    s.ensure_dirs()
    return s


@pytest.fixture
def node(pacs: Pacs, tmp_path: Path) -> Iterator[StorageNode]:
    n = StorageNode(_settings(tmp_path, pacs.node_port, pacs.orthanc.aet)).start()
    try:
        yield n
    finally:
        n.stop()


def _sops(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def _wait_closed(settings: Settings, study_uid: str, timeout: float = 10.0) -> Study:
    """Wait until the study leaves `receiving` (the completion grace has passed), then a bit more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            st = s.exec(select(Study).where(Study.study_uid == study_uid)).first()
            if st is not None and st.state != StudyState.receiving.value:
                break
        time.sleep(0.1)
    time.sleep(3 * settings.monitor_interval_s + settings.completion_grace_s)  # further ticks: still no job
    with session_scope(settings) as s:
        st = s.exec(select(Study).where(Study.study_uid == study_uid)).one()
        s.expunge(st)
        return st


def _instances(settings: Settings, study_id: int) -> list[Instance]:
    with session_scope(settings) as s:
        rows = list(s.exec(select(Instance).where(Instance.study_id == study_id)).all())
        for r in rows:
            s.expunge(r)
        return rows


def _jobs(settings: Settings) -> int:
    with session_scope(settings) as s:
        return len(s.exec(select(Job)).all())


def test_cmove_files_a_prior_and_never_starts_a_job(pacs: Pacs, node: StorageNode) -> None:
    report = CMoveRetriever(NODE_AE).retrieve(pacs.config, pacs.move_study, lambda b: 0, NODE_AE)
    assert report.completed == 3 and report.failed == 0 and not report.partial and report.final_status == 0

    st = _wait_closed(node.settings, pacs.move_study)
    assert st.role == StudyRole.prior.value
    assert st.calling_ae == pacs.orthanc.aet  # the PACS opened the association to us
    assert st.state == StudyState.complete.value  # closed on release + grace, not queued
    assert st.released_at is not None  # Orthanc released after the sub-operations
    assert st.n_instances == 3 and st.patient_id == "PW-MOVE-1" and st.modality == "CT"
    inst = _instances(node.settings, st.id)  # type: ignore[arg-type]
    assert {i.sop_instance_uid for i in inst} == _sops(pacs.files[pacs.move_study])
    assert all(Path(i.path).is_file() and Path(i.path).stat().st_size == i.size for i in inst)
    assert _jobs(node.settings) == 0
    assert node.monitor is not None and node.monitor.jobs_created == 0


def test_second_cmove_stores_nothing_twice(pacs: Pacs, node: StorageNode) -> None:
    first = CMoveRetriever(NODE_AE).retrieve(pacs.config, pacs.cr_study, lambda b: 0, NODE_AE)
    assert first.completed == 1
    st1 = _wait_closed(node.settings, pacs.cr_study)
    assert st1.state == StudyState.complete.value and st1.version == 1

    again = CMoveRetriever(NODE_AE).retrieve(pacs.config, pacs.cr_study, lambda b: 0, NODE_AE)
    assert again.completed == 1 and not again.partial  # the node answers success for a duplicate
    st2 = _wait_closed(node.settings, pacs.cr_study)
    assert node.counts["duplicates"] == 1 and node.counts["stored"] == 1
    assert st2.n_instances == 1 and st2.version == 1  # a duplicate does not reopen the study
    assert st2.state == StudyState.complete.value
    assert len(_instances(node.settings, st2.id)) == 1  # type: ignore[arg-type]
    assert len(list(node.settings.spool_dir.rglob("*.dcm"))) == 1
    assert _jobs(node.settings) == 0


def test_cmove_to_a_destination_the_pacs_does_not_know(pacs: Pacs) -> None:
    # Orthanc 1.10 answers 0xC000 ("Unknown modality for AET") rather than 0xA801.
    with pytest.raises(PacsError, match=r"destination") as exc:
        CMoveRetriever("NOWHERE").retrieve(pacs.config, pacs.move_study, lambda b: 0, NODE_AE)
    assert "0xC000" in str(exc.value) or "0xA801" in str(exc.value)
    assert pacs.orthanc.aet in str(exc.value)


def test_cget_into_the_ingest_sink_files_priors_without_a_job(pacs: Pacs, tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port(), pacs.orthanc.aet)
    ingest = Ingest(settings)
    sink = ingest.sink(role=StudyRole.prior.value, calling_ae=pacs.orthanc.aet)
    report = CGetRetriever().retrieve(pacs.config, pacs.get_study, sink, NODE_AE)
    assert report.completed == 3 and report.stored == 3 and not report.partial

    # No association of ours carries a release: the quiet period closes it; still no job.
    time.sleep(0.4)
    monitor = CompletionMonitor(settings)
    assert monitor.tick() == 0
    assert monitor.tick() == 0
    with session_scope(settings) as s:
        st = s.exec(select(Study).where(Study.study_uid == pacs.get_study)).one()
        assert st.role == StudyRole.prior.value and st.state == StudyState.complete.value
        assert st.n_instances == 3 and st.calling_ae == pacs.orthanc.aet
        sops = set(s.exec(select(Instance.sop_instance_uid).where(Instance.study_id == st.id)).all())
    assert sops == _sops(pacs.files[pacs.get_study])
    assert _jobs(settings) == 0

    again = CGetRetriever().retrieve(pacs.config, pacs.get_study, sink, NODE_AE)
    assert again.completed == 3 and not again.partial
    assert ingest.counts["duplicates"] == 3 and ingest.counts["stored"] == 3
    assert len(list(settings.spool_dir.rglob("*.dcm"))) == 3
    time.sleep(0.4)
    assert monitor.tick() == 0
    with session_scope(settings) as s:
        st = s.exec(select(Study).where(Study.study_uid == pacs.get_study)).one()
        assert st.n_instances == 3 and st.version == 1 and st.state == StudyState.complete.value
    assert _jobs(settings) == 0


def test_cmove_prior_recognised_by_move_originator(pacs: Pacs, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pacs.node_port, pacs.orthanc.aet).model_copy(update={"prior_source_aes": []})
    with StorageNode(settings) as node:
        report = CMoveRetriever(NODE_AE).retrieve(pacs.config, pacs.move_study, lambda b: 0, NODE_AE)
        assert report.completed == 3
        st = _wait_closed(node.settings, pacs.move_study)
    assert st.role == StudyRole.prior.value  # we asked for it (we are the move originator)
    assert _jobs(settings) == 0
