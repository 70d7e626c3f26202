"""Study completion from the database: release + grace, quiet-period fallback, one job per
(study, instance set), late series as new versions, broker outages."""

from __future__ import annotations

import time
from pathlib import Path

from pydicom import dcmread
from sqlmodel import select

from dicom_node import StorageNode, send_files
from priorwatch.db import session_scope
from priorwatch.models import Instance, Job, Study
from priorwatch.settings import Settings

from .conftest import CR, CT, StudyMaker, broker_messages, free_port, make_settings, wait_for

HOST = "127.0.0.1"


def _jobs(settings: Settings) -> list[Job]:
    with session_scope(settings) as s:
        return list(s.exec(select(Job).order_by(Job.id)))


def _study(settings: Settings) -> Study:
    with session_scope(settings) as s:
        return s.exec(select(Study)).one()


def test_release_completes_study_with_one_job(tmp_path: Path, maker: StudyMaker) -> None:
    # Quiet period far away: only the release can close the study within the test.
    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    files = maker.study(4)
    with StorageNode(settings) as node:
        assert send_files(files, HOST, node.port, settings.ae_title) == [0] * 4
        assert send_files(files, HOST, node.port, settings.ae_title) == [0] * 4  # the same study again, quickly
        assert wait_for(lambda: _study(settings).state == "queued", 5)
        time.sleep(1.0)  # several more ticks and another grace period: nothing new may appear
        jobs = _jobs(settings)
        study = _study(settings)
    assert len(jobs) == 1 and jobs[0].study_id == study.id and jobs[0].enqueued_at is not None
    assert study.released_at is not None and study.released_at >= study.last_received_at
    assert study.version == 1 and study.n_instances == 4
    assert broker_messages(settings) == [{"task": "workers.process_study", "args": [jobs[0].id]}]


def test_open_association_keeps_study_receiving(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    files = maker.study(2)
    from pynetdicom import AE

    with StorageNode(settings) as node:
        ae = AE(ae_title="MODALITY")
        meta = dcmread(files[0], stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
        assoc = ae.associate(HOST, node.port, ae_title=settings.ae_title)
        assert assoc.send_c_store(files[0]).Status == 0
        time.sleep(1.0)  # > grace: but no release yet
        assert _study(settings).state == "receiving" and _jobs(settings) == []
        assert assoc.send_c_store(files[1]).Status == 0
        assoc.release()
        assert wait_for(lambda: len(_jobs(settings)) == 1, 5)
    assert _study(settings).n_instances == 2


def test_quiet_period_completes_aborted_study(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"default": 2.0})
    files = maker.study(3)
    with StorageNode(settings) as node:
        t0 = time.monotonic()
        assert send_files(files, HOST, node.port, settings.ae_title, release=False) == [0, 0, 0]  # A-ABORT
        time.sleep(1.0)  # well past the grace period
        study = _study(settings)
        assert study.released_at is None and study.state == "receiving" and _jobs(settings) == []
        assert wait_for(lambda: _study(settings).state == "queued", 5)
        assert time.monotonic() - t0 >= 1.9
        time.sleep(0.5)
        assert len(_jobs(settings)) == 1 and len(broker_messages(settings)) == 1


def test_quiet_period_is_per_modality(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"CR": 0.5, "default": 60.0})
    cr = maker.study(1, CR)
    ct = maker.study(1, CT)
    with StorageNode(settings) as node:
        assert send_files(cr + ct, HOST, node.port, settings.ae_title, release=False) == [0, 0]
        assert wait_for(lambda: len(_jobs(settings)) == 1, 5)
        time.sleep(0.5)
        with session_scope(settings) as s:
            states = {st.modality: st.state for st in s.exec(select(Study))}
    assert states == {"CR": "queued", "CT": "receiving"}


def test_late_series_starts_new_version(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    first = maker.study(2, CR)
    study_uid = dcmread(first[0], stop_before_pixels=True).StudyInstanceUID
    late = maker.study(1, CR, study_uid=study_uid)  # another series of the same study
    with StorageNode(settings) as node:
        assert send_files(first, HOST, node.port, settings.ae_title) == [0, 0]
        assert wait_for(lambda: len(_jobs(settings)) == 1, 5)
        assert send_files(late, HOST, node.port, settings.ae_title) == [0]
        assert wait_for(lambda: len(_jobs(settings)) == 2, 5)
        time.sleep(0.5)
        jobs = _jobs(settings)
        study = _study(settings)
        with session_scope(settings) as s:
            versions = sorted(i.study_version for i in s.exec(select(Instance)))
    assert len(jobs) == 2
    assert (study.version, study.state, study.n_instances) == (2, "queued", 3)
    assert [j.study_version for j in jobs] == [1, 2]
    assert jobs[0].idempotency_key != jobs[1].idempotency_key
    assert versions == [1, 1, 2]
    assert [m["args"] for m in broker_messages(settings)] == [[jobs[0].id], [jobs[1].id]]


def test_late_duplicate_does_not_reopen(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    files = maker.study(2)
    with StorageNode(settings) as node:
        assert send_files(files, HOST, node.port, settings.ae_title) == [0, 0]
        assert wait_for(lambda: len(_jobs(settings)) == 1, 5)
        assert send_files(files[:1], HOST, node.port, settings.ae_title) == [0]
        time.sleep(1.0)
    assert len(_jobs(settings)) == 1 and _study(settings).version == 1


def test_prior_source_study_completes_without_job(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, prior_source_aes=["ARCHIVE"])
    files = maker.study(2, CR)
    with StorageNode(settings) as node:
        assert send_files(files, HOST, node.port, settings.ae_title, calling_ae="ARCHIVE") == [0, 0]
        assert wait_for(lambda: _study(settings).state == "complete", 5)
        time.sleep(0.5)
    study = _study(settings)
    assert study.role == "prior" and study.completed_at is not None
    assert _jobs(settings) == [] and broker_messages(settings) == []


def test_broker_down_leaves_job_unsent_and_restart_sends_it(tmp_path: Path, maker: StudyMaker) -> None:
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = make_settings(tmp_path, broker_url=dead_broker)
    files = maker.study(2)
    with StorageNode(down) as node:
        assert send_files(files, HOST, node.port, down.ae_title) == [0, 0]
        assert wait_for(lambda: len(_jobs(down)) == 1, 5)
        time.sleep(0.5)
        [job] = _jobs(down)
        assert job.enqueued_at is None and _study(down).state == "queued"
        # The node still serves while the broker is down.
        assert send_files(maker.study(1), HOST, node.port, down.ae_title) == [0]
    # Restart on the same data dir with a broker that works: the unsent jobs go out.
    up = down.model_copy(update={"broker_url": None, "dicom_port": free_port()})
    with StorageNode(up):
        assert wait_for(lambda: all(j.enqueued_at is not None for j in _jobs(up)) and len(_jobs(up)) == 2, 10)
    assert sorted(m["args"][0] for m in broker_messages(up)) == sorted(j.id for j in _jobs(up))


def test_jobs_sent_in_one_pass_are_recorded_in_one_transaction(tmp_path: Path, maker: StudyMaker,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each synced commit holds the node's write lock through its fsync: the jobs one pass hands
    to the broker are marked sent together (was one transaction per job)."""
    from dicom_node import completion, index

    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    with StorageNode(settings, monitor=False) as node:
        for _ in range(3):
            assert send_files(maker.study(1), HOST, node.port, settings.ae_title) == [0]
    time.sleep(settings.completion_grace_s + 0.1)
    calls: list[list[int]] = []

    def recording(engine, job_ids):  # type: ignore[no-untyped-def]
        calls.append(list(job_ids))
        index.mark_enqueued(engine, job_ids)

    monkeypatch.setattr(completion, "mark_enqueued", recording)
    monitor = completion.CompletionMonitor(settings)
    assert monitor.tick() == 3
    jobs = _jobs(settings)
    assert calls == [[j.id for j in jobs]]
    assert [j.enqueued_at is not None for j in jobs] == [True] * 3
    assert sorted(m["args"][0] for m in broker_messages(settings)) == [j.id for j in jobs]
