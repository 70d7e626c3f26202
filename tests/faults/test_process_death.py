"""kill -9 mid-run, on the embedded default (SQLite + filesystem broker), with real parts:
`priorwatch serve` (tritonserver, Celery worker, beat, node) as its own process, 40 studies from
DCMTK `storescu`, and a webhook receiver that checks signatures and counts every call. Every
study must end with exactly one result and every urgent notice arrive once per Idempotency-Key
(a send a death cut off is repeated with its key; never more often than the deaths), with no operator
action (restarting `serve` after it was killed stands for systemd). The long run, with Triton
and Redis killed too and PostgreSQL + Redis: benchmarks/faults.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.faults.harness import Site, WebhookReceiver, make_cases, no_orphans, send_cases, site_settings, \
    wait_running, wait_settled

N = 40


@pytest.mark.triton
def test_worker_then_serve_killed_mid_run_every_study_one_result_every_notice_once(tmp_path: Path) -> None:
    require_binary("storescu")
    hook = WebhookReceiver()
    settings = site_settings(tmp_path / "data", hook)
    cases = make_cases(tmp_path / "input", N)
    site = Site(settings, tmp_path).start()
    try:
        send_cases(cases, settings.dicom_port)
        wait_running(settings, min_done=3)
        site.kill9("worker")  # mid-job: the job it held must be handed out again
        wait_running(settings, min_done=12)
        family = [pid for pid, _ in site.descendants()]
        site.kill9("serve")
        assert no_orphans(family) == [], "children of a killed serve must die with it"
        site.start()  # what systemd's Restart= does; nothing else is done by hand
        o = wait_settled(settings, hook, N, timeout=420)
    finally:
        site.stop()
        hook.close()
    # two deaths (the worker, then serve with its sweeper): each may cut off one send in flight,
    # which is repeated with the same Idempotency-Key; anything more is a double send
    assert o.problems(N, deaths=2) == []
    assert o.urgent_ids, "the run must include urgent results for the notice check to mean anything"
    assert max(o.attempts) >= 2, "the killed jobs were run again"
    assert "worker exited (signal 9)" in site.output()
