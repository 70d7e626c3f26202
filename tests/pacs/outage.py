"""A PACS outage run through the whole runtime (node, worker, Triton): every patient's prior is
in a DCMTK dcmqrscp that is down when the new studies arrive; the jobs wait for it and, when it
comes back, every study ends with exactly one result that compares with its prior.

Used by the suite (seconds of outage, scaled back-off) and by scripts/pacs_outage.py (5 min,
40 studies). Returns the figures it measured."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from sqlmodel import select

from comparison import synthetic
from dicom_node import send_files
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Job, JobState, Study
from priorwatch.settings import Settings
from tests.conftest import free_port
from tests.peers import DcmQrScp

NODE_AE = "PRIORWATCH"


def _jobs(settings: Settings) -> list[Job]:
    with session_scope(settings) as s:
        return list(s.exec(select(Job)).all())


def run_outage(tmp: Path, n_studies: int, outage_s: float, *, retrieve: str = "c-get",
               retry_max_s: float = 1.0, finish_timeout_s: float = 300.0) -> dict[str, Any]:
    from workers.runtime import Runtime

    node_port = free_port()
    pacs = DcmQrScp(tmp / "pacs", hosts={"priorwatch": (NODE_AE, "127.0.0.1", node_port)})
    pairs = [synthetic.make_pair(tmp / "in" / str(i), f"PW-OUT-{i}", seed=i, scale=0.25) for i in range(n_studies)]
    pacs.start()
    pacs.load([p for pair in pairs for p in pair.prior_paths])
    pacs.stop()  # down before the first study arrives
    settings = Settings(
        data_dir=tmp / "data", dicom_port=node_port, ae_title=NODE_AE,
        triton_grpc_port=free_port(), triton_http_port=free_port(), triton_metrics_port=free_port(),
        completion_grace_s=0.3, queue_name=f"pw-{uuid.uuid4().hex[:8]}",
        pacs_ae_title=pacs.aet, pacs_port=pacs.port, pacs_retrieve=retrieve, pacs_timeout_s=2.0,
        task_retry_backoff_s=0.3, task_max_retries=1,  # an outage must not use up these attempts
        pacs_retry_max_s=retry_max_s, receive_processes=1,
    )
    figures: dict[str, Any] = {"studies": n_studies, "outage_s": outage_s, "retrieve": retrieve}
    with Runtime(settings) as rt:
        for pair in pairs:
            assert send_files(pair.current_paths, "127.0.0.1", node_port, NODE_AE, calling_ae="CR01") == [0] * len(
                pair.current_paths)
        t_down = time.monotonic()
        # Every job has tried the PACS and is waiting for it (the worker may take a while to start)...
        while time.monotonic() - t_down < finish_timeout_s:
            during = _jobs(rt.settings)
            if len(during) == n_studies and all("waiting for the PACS" in (j.error or "") for j in during):
                break
            time.sleep(0.25)
        figures["all_waiting_after_s"] = round(time.monotonic() - t_down, 1)
        time.sleep(outage_s)  # ...and keeps waiting through the outage
        during = _jobs(rt.settings)
        figures["jobs_during_outage"] = len(during)
        figures["done_during_outage"] = sum(j.state == JobState.done for j in during)
        figures["failed_during_outage"] = sum(j.state == JobState.failed for j in during)
        figures["states_during_outage"] = sorted(str(j.state) for j in during)
        figures["waiting_reasons"] = sorted({(j.error or "")[:30] for j in during})
        figures["waiting_during_outage"] = sum("waiting for the PACS" in (j.error or "") for j in during)
        pacs.start()  # the PACS comes back on the same port
        t_back = time.monotonic()
        figures["outage_measured_s"] = round(t_back - t_down, 1)
        deadline = t_back + finish_timeout_s
        while time.monotonic() < deadline:
            jobs = _jobs(rt.settings)
            if len(jobs) == n_studies and all(j.state in (JobState.done, JobState.failed) for j in jobs):
                break
            time.sleep(0.5)
        figures["all_finished_s_after_return"] = round(time.monotonic() - t_back, 1)
    pacs.stop()
    with session_scope(settings) as s:
        jobs = s.exec(select(Job)).all()
        comps = s.exec(select(Comparison)).all()
        by_study = {}
        for c in comps:
            by_study.setdefault(c.study_id, []).append(c)
        expected = {pair.current_study_uid: pair.prior_study_uid for pair in pairs}
        right = 0
        for study_id, cs in by_study.items():
            cur = s.get(Study, study_id)
            prior = s.get(Study, cs[0].prior_study_id) if cs[0].prior_study_id else None
            if cur is not None and prior is not None and expected.get(cur.study_uid) == prior.study_uid:
                right += 1
        figures.update(
            jobs=len(jobs), done=sum(j.state == JobState.done for j in jobs),
            failed=sum(j.state == JobState.failed for j in jobs),
            studies_with_one_result=sum(len(cs) == 1 for cs in by_study.values()),
            results=len(comps), priors_right=right,
            no_prior=sum(c.status == "no_prior" for c in comps),
            max_attempts=max((j.attempts for j in jobs), default=0),
        )
    return figures
