"""Workers without a shared disk, in the suite (the 200-study proof: benchmarks/no_shared_disk.py):
2 worker processes with private data dirs and the node's data dir hidden from them, PostgreSQL +
Redis, 10 studies -> exactly one result each, currents compared with their fetched prior."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks.cluster import Cluster
from priorwatch.models import JobState


@pytest.mark.server
@pytest.mark.triton
def test_workers_without_the_nodes_disk_give_one_result_per_study(tmp_path: Path) -> None:
    studies = Cluster.make_studies(tmp_path / "input", patients=5)
    with Cluster(tmp_path / "site", workers=2, broker="redis") as c:
        c.send(studies)
        jobs = c.wait(len(studies), timeout_s=300)
        results = c.results()
        per_worker = c.jobs_per_worker()
        leftovers = c.leftover_cache_files()
    assert [j.error for j in jobs if j.state == JobState.failed] == []
    per_study = Counter(uid for uid, *_ in results)
    assert set(per_study) == {s.study_uid for s in c.sent} and set(per_study.values()) == {1}
    currents = [r for r in results if r[2] == "done"]
    assert len(currents) == 5 and all(prior is not None for _, prior, _, _ in currents)
    assert leftovers == 0
    assert sum(per_worker.values()) == 10


@pytest.mark.server
@pytest.mark.triton
def test_worker_in_its_own_mount_namespace_overlay_shown_and_srs_in_the_pacs(tmp_path: Path) -> None:
    """Server mode (PostgreSQL + Redis), one worker in a mount namespace of its own (its data dir a
    tmpfs the node and dashboard cannot see), the prior only in Orthanc: the review page in real
    Chromium shows the worker's overlay, the preliminary SR reaches the PACS, the urgent notice is
    sent, and the sign-off made in the page goes to the PACS as a signed SR sent by the worker's
    sweep; the retrieved prior is in the node's store."""
    from benchmarks import no_shared_disk as nsd
    from tests.conftest import free_port
    from tests.dashboard.browser import dashboard_server
    from tests.faults.harness import WebhookReceiver

    patients = Cluster.make_studies(tmp_path / "input", patients=1, urgent_every=1)  # a new pneumothorax
    hook = WebhookReceiver()
    with Cluster(tmp_path / "site", workers=1, broker="redis", pacs=True, webhook=(hook.url, hook.secret)) as c:
        assert c.isolated, "run as root: the worker needs its own mount namespace"
        c.load_pacs(patients[0::2])
        c.send(patients[1::2])
        jobs = c.wait(1, timeout_s=300)
        nsd.add_reviewer(c)
        (tmp_path / "dash").mkdir()
        with dashboard_server(tmp_path / "dash", free_port(), nsd.dashboard_env(c)) as url:
            o = nsd.check(c, patients[1::2], jobs, url, hook)
    hook.close()
    assert o.failed_jobs == [] and (o.results, o.with_prior) == (1, 1)
    assert (o.overlays_in_db, o.overlays_shown) == (1, 1)
    assert (o.preliminary_in_pacs, o.signed, o.signed_in_pacs) == (1, 1, 1)
    assert o.prior_instances > 0 and o.prior_instances_served == o.prior_instances
    assert (o.evidence_missing, o.leftovers) == (0, 0)
    assert (o.urgent, o.notices) == (1, 1)  # the urgent notice, from the worker, too
