"""The relevant history through the real worker path (issue 29): a 4-study history (baseline,
one between, most recent, current) with a nodule that appears and grows. Node, Celery worker and
a local Triton (`Runtime`, as `priorwatch serve` runs them); the priors in the node's own store,
or in a real PACS (Orthanc, DCMTK dcmqrscp) from which one of them cannot be fetched.

Every result lists the priors it used, each with its role and reason, a prior that could not be
fetched is named with why, and the nodule's history runs over all four studies."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import pydicom
import pytest
from sqlmodel import select

from dicom_node import Ingest, send_files
from priorwatch.db import session_scope
from priorwatch.export import comparison_records
from priorwatch.models import Comparison, Finding, Job, JobState
from priorwatch.settings import Settings
from tests.conftest import free_port, require_binary
from tests.history_series import SeriesStudy, write_series
from tests.peers import DcmQrScp, Orthanc
from workers.runtime import Runtime

NODE_AE = "PRIORWATCH"
TODAY = dt.date.today()
DATES = [TODAY - dt.timedelta(days=d) for d in (600, 330, 60, 0)]  # baseline, between, most recent, current
SEVERITY = [0.0, 0.5, 0.75, 1.0]


def _series(tmp: Path, pid: str) -> list[SeriesStudy]:
    return write_series(tmp / "series", pid, "nodule", SEVERITY, DATES, seed=5)


def _settings(tmp: Path, node_port: int, **kw: object) -> Settings:
    return Settings(data_dir=tmp / "data", dicom_port=node_port, ae_title=NODE_AE, completion_grace_s=0.3,
                    triton_grpc_port=free_port(), triton_http_port=free_port(), triton_metrics_port=free_port(),
                    queue_name=f"pw-{uuid.uuid4().hex[:8]}", task_retry_backoff_s=0.3, **kw)  # type: ignore[arg-type]


def _run_current(settings: Settings, current: SeriesStudy, timeout: float = 240) -> Comparison:
    with Runtime(settings) as rt:
        assert send_files([current.path], "127.0.0.1", settings.dicom_port, NODE_AE, calling_ae="CR01") == [0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(rt.settings) as s:
                jobs = s.exec(select(Job)).all()
            if jobs and all(j.state in (JobState.done, JobState.failed) for j in jobs):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("no result in time")
    assert len(jobs) == 1 and jobs[0].state == JobState.done, [j.error for j in jobs]
    with session_scope(settings) as s:
        comp = s.exec(select(Comparison)).one()
        s.expunge(comp)
    return comp


def _check(settings: Settings, comp: Comparison, series: list[SeriesStudy], unfetched: int | None) -> None:
    result = json.loads(comp.result_json)
    choices = json.loads(comp.prior_choices_json)
    assert [c["study_uid"] for c in choices] == [s.study_uid for s in series[:-1]]
    assert [c["role"] for c in choices] == ["baseline", "intermediate", "most_recent"]
    assert all(c["reason"] for c in choices)
    fetched = [c["fetched"] for c in choices]
    assert fetched == [i != unfetched for i in range(3)]
    # a prior that could not be fetched is named with why, in its choice and in the draft; none else is
    assert [bool(c["problem"]) for c in choices] == [i == unfetched for i in range(3)]
    assert ("Not available: the study of" in comp.draft_text) is (unfetched is not None)
    assert json.loads(comp.priors_json) == [s.study_uid for i, s in enumerate(series[:-1]) if i != unfetched]
    assert result["priors"] == json.loads(comp.priors_json)
    assert f"Compared with the study of {DATES[2].isoformat()} (most recent prior)" in comp.draft_text
    with session_scope(settings) as s:
        rows = s.exec(select(Finding).where(Finding.comparison_id == comp.id)).all()
        opac = [f for f in rows if f.finding in ("nodule", "mass", "consolidation")]
        assert len(opac) == 1, [(f.finding, f.side, f.zone) for f in rows]
        f = opac[0]
        history = json.loads(f.history_json)
        assert [h["study_uid"] for h in history] == [s.study_uid for s in series]
        states = [h["state"] for h in history]
        assert states[0] == "absent" and states[-1] == "present"  # the sizes' accuracy: the lead's blind evaluation
        assert (states[1] == "not_assessable") is (unfetched == 1)
        assert states[2] != "not_assessable"
        assert f.first_seen is not None and f.trajectory and f.size_mm and f.size_mm > 5
        # the export (`priorwatch results --json`, the webhook and the SR read it) carries the same
        [rec] = comparison_records(s, comp.id)
    assert (rec["priors"], rec["prior_choices"]) == (json.loads(comp.priors_json), choices)
    [fr] = [x for x in rec["findings"] if x["finding"] == f.finding]
    assert fr["history"] == history and fr["trajectory"] == f.trajectory and fr["size_mm"] == f.size_mm
    assert fr["first_seen"] == f.first_seen.isoformat()


@pytest.mark.triton
def test_four_study_history_in_the_node_store(tmp_path: Path) -> None:
    series = _series(tmp_path, "PW-HIST-NODE")
    settings = _settings(tmp_path, free_port())
    settings.ensure_dirs()
    sink = Ingest(settings).sink(role="prior", calling_ae="ARCHIVE")
    for st in series[:-1]:
        assert sink(st.path.read_bytes()) == 0
    comp = _run_current(settings, series[-1])
    _check(settings, comp, series, unfetched=None)


def _unreceivable(path: Path) -> Path:
    """A copy of a study's image under a SOP class no node proposes for C-GET (a private one): the PACS
    lists the study, but cannot send it to us."""
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.29.1"
    out = path.with_name(path.stem + "-private.dcm")
    ds.save_as(out, enforce_file_format=True)
    return out


def _dcmqrscp_break(pacs: DcmQrScp, study_uid: str) -> None:
    """Make one study unretrievable: its file is gone from dcmqrscp's storage area, its index entry stays."""
    for f in (pacs.workdir / "db").iterdir():
        if f.name == "index.dat" or not f.is_file():
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        if str(ds.get("StudyInstanceUID", "")) == study_uid:
            f.unlink()


@pytest.mark.triton
@pytest.mark.parametrize("kind", ["orthanc", "dcmqrscp"])
def test_four_study_history_in_a_pacs_with_one_prior_unfetchable(tmp_path: Path, kind: str) -> None:
    series = _series(tmp_path, f"PW-HIST-{kind.upper()}")
    node_port = free_port()
    peer: Orthanc | DcmQrScp
    if kind == "orthanc":
        require_binary("Orthanc")
        peer = Orthanc(tmp_path / "pacs", modalities={"pw": (NODE_AE, "127.0.0.1", node_port)}, dicomweb=False)
        peer.start()
        for i, st in enumerate(series[:-1]):
            peer.upload(_unreceivable(st.path) if i == 1 else st.path)
    else:
        require_binary("dcmqrscp")
        peer = DcmQrScp(tmp_path / "pacs", hosts={"pw": (NODE_AE, "127.0.0.1", node_port)})
        peer.start()
        peer.load([st.path for st in series[:-1]])
        _dcmqrscp_break(peer, series[1].study_uid)
    try:
        settings = _settings(tmp_path, node_port, pacs_ae_title=peer.aet, pacs_port=peer.dicom_port,
                             pacs_retrieve="c-get")
        comp = _run_current(settings, series[-1])
    finally:
        peer.stop()
    _check(settings, comp, series, unfetched=1)
