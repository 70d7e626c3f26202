"""Workers that share no disk with the node (issue 32), piece by piece on real HTTP and files:
a prior one worker retrieved is filed in the node's store and fetched by another; SR evidence
is read over the node's store; the signed SR names its predecessor without the draft's file;
the heat-map overlay is a database row the dashboard draws."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlmodel import select

from comparison import synthetic
from dicom_node import Ingest, statuses
from dicom_node.serve_store import node_service
from priorwatch.artefacts import OVERLAY_IN_DATABASE, overlay_png
from priorwatch.db import init_db, session_scope
from priorwatch.models import Comparison, ComparisonOverlay, Delivery, Instance, Job, Study
from priorwatch.settings import Settings
from tests.conftest import free_port
from workers.deliver import read_evidence, sr_series_uid
from workers.errors import PermanentError
from workers.final_sr import preliminary_reference
from workers.node_fetch import InstanceFiles, prior_sink

TOKEN = "an0ther-s3cret"


def _node(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "node", node_token=TOKEN, node_http_port=0, dicom_port=free_port())
    init_db(settings)
    return settings


def _worker(tmp_path: Path, name: str, port: int) -> Settings:
    """A worker's settings: its own data dir, the node's store over HTTP, the same database."""
    node_db = f"sqlite:///{tmp_path / 'node' / 'priorwatch.db'}"
    return Settings(data_dir=tmp_path / name, worker_fetch="node", node_token=TOKEN,
                    node_url=f"http://127.0.0.1:{port}", database_url=node_db)


def _post(url: str, body: bytes, token: str | None, ctype: str = "application/dicom") -> tuple[int, bytes]:
    headers = {"Content-Type": ctype, **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_prior_one_worker_retrieved_is_filed_in_the_node_and_fetched_by_another(tmp_path: Path) -> None:
    node = _node(tmp_path)
    pair = synthetic.make_pair(tmp_path / "in", "PWANY1", seed=3)
    with node_service(node) as svc:
        w1, w2 = _worker(tmp_path, "w1", svc.port), _worker(tmp_path, "w2", svc.port)
        sink = prior_sink(w1, "PACS")  # what worker 1's C-GET / WADO-RS hands each retrieved instance to
        assert [sink(Path(p).read_bytes()) for p in pair.prior_paths] == [statuses.SUCCESS] * len(pair.prior_paths)
        assert sink(Path(pair.prior_paths[0]).read_bytes()) == statuses.SUCCESS  # a re-send is a duplicate
        with session_scope(node) as s:
            rows = s.exec(select(Instance, Study).join(Study, Study.id == Instance.study_id)).all()  # type: ignore[arg-type]
        assert len(rows) == len(pair.prior_paths)
        assert {st.role for _, st in rows} == {"prior"} and {st.calling_ae for _, st in rows} == {"PACS"}
        assert all(Path(i.path).resolve().is_relative_to(node.spool_dir.resolve()) for i, _ in rows)
        assert list((w1.data_dir / "spool").rglob("*.dcm")) == []  # (a folder that is not there has none)
        with InstanceFiles(w2, job_id=1) as files:  # worker 2, without worker 1's disk or the node's
            got = Path(files.path(rows[0][0].id, "/not/on/this/disk.dcm")).read_bytes()
        assert got == Path(rows[0][0].path).read_bytes()


def test_posting_instances_needs_the_token_dicom_and_gets_the_nodes_checks(tmp_path: Path) -> None:
    node = _node(tmp_path)
    raw = Path(synthetic.make_pair(tmp_path / "in", "PWANY2", seed=4, with_prior=False).current_paths[0]).read_bytes()
    with node_service(node) as svc:
        url = f"http://127.0.0.1:{svc.port}/instances"
        assert _post(url, raw, None)[0] == 401
        assert _post(url, raw, "wrong")[0] == 401
        assert _post(url, raw, TOKEN, ctype="application/octet-stream")[0] == 415
        status, body = _post(url, b"not dicom at all" * 10, TOKEN)
        assert status == 409 and json.loads(body)["status"] == statuses.NOT_DICOM
        cut = raw[: len(raw) - 1000]  # pixel data shorter than its header says: refused, as by C-STORE
        status, body = _post(url, cut, TOKEN)
        assert status == 409 and json.loads(body)["status"] == statuses.PIXEL_DATA_INCOMPLETE
        status, body = _post(url, raw, TOKEN)
        assert status == 200 and json.loads(body) == {"status": 0, "comment": ""}
    with session_scope(node) as s:
        assert len(s.exec(select(Instance)).all()) == 1


def test_node_refuses_a_body_over_its_limit_unread(tmp_path: Path) -> None:
    node = _node(tmp_path)
    svc = node_service(node)
    svc.max_body_bytes = 1000
    with svc:
        status, _ = _post(f"http://127.0.0.1:{svc.port}/instances", b"x" * 5000, TOKEN)
    assert status == 413


def test_sr_evidence_is_read_over_the_nodes_store_and_a_gone_one_is_named(tmp_path: Path) -> None:
    node = _node(tmp_path)
    pair = synthetic.make_pair(tmp_path / "in", "PWANY3", seed=5, with_prior=False)
    ingest = Ingest(node)
    for p in pair.current_paths:
        ingest.store(Path(p).read_bytes(), calling_ae="CR01")
    with session_scope(node) as s:
        inst = s.exec(select(Instance)).one()
        iid, recorded = inst.id, inst.path
    with node_service(node) as svc:
        w = _worker(tmp_path, "sweeper", svc.port)
        hidden = "/elsewhere/" + Path(recorded).name  # the index's path, as a sweeper on another machine sees it
        ev = read_evidence(w, [(iid, hidden)], "SR")
        assert [d.SOPInstanceUID for d in ev] == [pydicom.dcmread(recorded, stop_before_pixels=True).SOPInstanceUID]
        assert "PixelData" not in ev[0]
        assert list((w.data_dir / "cache").iterdir()) == []  # fetched copies are gone
        Path(recorded).unlink()
        with pytest.raises(PermanentError, match="evidence instance missing"):
            read_evidence(w, [(iid, hidden)], "SR")
        assert read_evidence(w, [(iid, hidden)], "SR", required=False) == []  # a prior gone: left out


def _comparison(settings: Settings) -> tuple[int, str]:
    with session_scope(settings) as s:
        st = Study(study_uid="1.2.826.0.1.9032.1", patient_id="PWANY4", role="incoming")
        s.add(st)
        s.flush()
        job = Job(study_id=st.id, study_version=1, idempotency_key="any-1", state="done")  # type: ignore[arg-type]
        s.add(job)
        s.flush()
        comp = Comparison(job_id=job.id, study_id=st.id)  # type: ignore[arg-type]
        s.add(comp)
        s.flush()
        return int(comp.id), st.study_uid  # type: ignore[arg-type]


def test_signed_sr_names_the_sent_draft_without_its_file(tmp_path: Path) -> None:
    settings = _node(tmp_path)
    comp_id, study_uid = _comparison(settings)
    assert preliminary_reference(settings, comp_id, study_uid) is None  # no draft row
    draft_uid = pydicom.uid.generate_uid()
    with session_scope(settings) as s:
        s.add(Delivery(comparison_id=comp_id, kind="sr", state="pending", sop_instance_uid=draft_uid))
    assert preliminary_reference(settings, comp_id, study_uid) is None  # not sent: nothing to supersede
    with session_scope(settings) as s:
        d = s.exec(select(Delivery)).one()
        d.state = "sent"
        s.add(d)
    ref = preliminary_reference(settings, comp_id, study_uid)
    assert ref is not None and ref.SOPInstanceUID == draft_uid and ref.StudyInstanceUID == study_uid
    assert ref.SeriesInstanceUID == sr_series_uid(draft_uid) != sr_series_uid(pydicom.uid.generate_uid())
    assert ref.SOPClassUID == pydicom.uid.ComprehensiveSRStorage


def test_overlay_is_a_database_row_the_dashboard_draws(tmp_path: Path) -> None:
    from dashboard import images
    from workers.pipeline import _save_heatmap

    settings = _node(tmp_path)
    comp_id, _ = _comparison(settings)
    heat = np.zeros((64, 64), np.uint8)
    heat[10:30, 10:30] = 255
    with session_scope(settings) as s:
        comp = s.get(Comparison, comp_id)
        assert comp is not None
        comp.overlay_path = _save_heatmap(s, comp_id, heat)
        s.add(comp)
    assert list(settings.results_dir.rglob("*")) == []  # no file anywhere (nor a folder that is not there)
    with session_scope(settings) as s:
        comp = s.get(Comparison, comp_id)
        assert comp is not None and comp.overlay_path == OVERLAY_IN_DATABASE
        png = overlay_png(s, comp_id)
        assert s.get(ComparisonOverlay, comp_id) is not None
    assert png is not None
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), heat)
    gray = np.full((128, 128), 100, np.uint8)
    drawn = images.overlay_heatmap(gray, png)
    assert drawn.shape == (128, 128, 3)
    assert drawn[40, 40, 0] > drawn[40, 40, 2] + 50  # red where the heat is
    assert tuple(drawn[100, 100]) == (100, 100, 100)  # untouched where there is none
