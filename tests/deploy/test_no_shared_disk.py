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
