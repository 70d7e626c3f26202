"""Proof: workers without a shared disk. K worker processes, each in its own mount namespace (the
node's data dir hidden, its own data dir a tmpfs only it sees), on PostgreSQL with Redis (and
RabbitMQ); a real Orthanc is the PACS. Each patient's prior is in the PACS only, its current is
sent to the node. Every current must get exactly one result compared with its prior (retrieved
by a worker, filed in the node's store, fetched from there), a preliminary SR in the PACS, an
overlay that the dashboard shows, an urgent notice (signed, once) when the result is urgent, and, after a radiologist accepts it in the dashboard (real
Chromium, "Accept as is"), a signed SR in the PACS sent by the sweep in a worker; no failed job,
no "evidence instance missing", every prior instance served by the node's store, no file left
in any worker's cache.

    .venv/bin/python -m benchmarks.no_shared_disk --studies 30 --workers 3 --broker redis rabbitmq
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import select

from benchmarks.cluster import Cluster
from priorwatch.artefacts import OVERLAY_IN_DATABASE
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Delivery, Instance, Job, JobState, Study, WorklistItem
from priorwatch.settings import as_env
from tests.faults.harness import WebhookReceiver

EVIDENCE_MISSING = "evidence instance missing"
REVIEWER, PASSWORD = "rad1", "no-shared-disk-1"  # a radiologist made for the run, in the run's own schema
GET_TRIES = 3  # a GET reset by the server (stale kept-alive connection, seen under load) is tried again
URGENT_EVERY = 3  # every third patient's current has a new pneumothorax: urgent notices go out too
SIGNED_SR_WAIT_S = 120.0  # a sign-off's SR goes out on worker 0's next beat sweep (every 5 s), then its C-STORE


@dataclass
class Review:
    """What the dashboard showed and did for one worklist item."""

    overlay_png: bool = False  # the review page's current image with overlay=<comparison> came back as a PNG
    overlay_differs: bool = False  # ... and differs from the same image without it
    signed: bool = False  # "Accept as is" pressed; the page said "Signed (accepted)"


@dataclass
class Outcome:
    studies: int = 0
    results: int = 0
    max_per_study: int = 0
    with_prior: int = 0
    failed_jobs: list[str] = field(default_factory=list)
    overlays_in_db: int = 0
    preliminary_in_pacs: int = 0
    overlays_shown: int = 0
    signed: int = 0
    signed_in_pacs: int = 0
    evidence_missing: int = 0
    prior_instances: int = 0
    prior_instances_served: int = 0
    leftovers: int = -1
    urgent: int = 0  # results the engine flagged urgent
    notices: int = 0  # of those, urgent notices the receiver got, signed, once each
    per_worker: dict[str, int] = field(default_factory=dict)

    def ok(self) -> bool:
        n = self.studies
        return (self.results == n and self.max_per_study == 1 and self.with_prior == n and not self.failed_jobs
                and self.overlays_in_db == n and self.preliminary_in_pacs == n and self.overlays_shown == n
                and self.signed == n and self.signed_in_pacs == n and self.evidence_missing == 0
                and self.prior_instances > 0 and self.prior_instances_served == self.prior_instances
                and self.leftovers == 0 and self.notices == self.urgent)


def in_pacs(c: Cluster, sop_uid: str | None) -> dict[str, str] | None:
    """The PACS's simplified tags of the instance with this SOP Instance UID, or None."""
    assert c.orthanc is not None
    if not sop_uid:
        return None
    found = c.orthanc.rest("/tools/find", data=json.dumps(
        {"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}).encode(), method="POST")
    return c.orthanc.rest(f"/instances/{found[0]}/simplified-tags") if len(found) == 1 else None


def wait_deliveries(c: Cluster, kind: str, n: int, timeout_s: float) -> list[Delivery]:
    """The `kind` outbox rows once `n` of them are settled (sent or failed), or at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        with session_scope(c.node_settings) as s:
            rows = list(s.exec(select(Delivery).where(Delivery.kind == kind)).all())
        if sum(d.state in ("sent", "failed") for d in rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def served_by_node(c: Cluster, instance_ids: list[int]) -> int:
    """How many of these instances the node's HTTP store serves (what any worker can fetch)."""
    n = 0
    base = f"http://127.0.0.1:{c.node_settings.node_http_port}/instances/"
    for i in instance_ids:
        req = urllib.request.Request(base + str(i), headers={"Authorization": f"Bearer {c.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                n += r.status == 200 and len(r.read()) > 0
        except urllib.error.HTTPError:
            pass
    return n


def review_in_dashboard(url: str, items: dict[int, int]) -> dict[int, Review]:
    """In headless Chromium, as the radiologist: open each item's review page, switch the
    difference overlay on, fetch the current image the page shows (overlay=<comparison>) and the
    same without it, then press "Accept as is". `items`: item id -> comparison id."""
    from playwright.sync_api import expect, sync_playwright

    from tests.dashboard.browser import launch, login

    out: dict[int, Review] = {}
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(60_000)
            login(page, url, REVIEWER, PASSWORD)
            for item, comp_id in items.items():
                out[item] = _review_one(page, url, item, comp_id)
        finally:
            browser.close()
    return out


def _get(page, url: str, tries: int = GET_TRIES):  # type: ignore[no-untyped-def]
    """GET with the page's cookies; a connection reset is tried again (a kept-alive connection the
    server had just closed: any HTTP client retries an idempotent GET then), nothing else is."""
    from playwright.sync_api import Error

    for attempt in range(tries):
        try:
            return page.request.get(url)
        except Error as exc:
            if "ECONNRESET" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _review_one(page, url: str, item: int, comp_id: int) -> Review:  # type: ignore[no-untyped-def]
    """One item on the review page; a step that fails leaves its flag False (counted, not raised)."""
    from playwright.sync_api import Error, expect

    r = Review()
    page.goto(f"{url}/?item={item}")
    expect(page.get_by_role("button", name="Accept as is")).to_be_enabled()
    page.get_by_text("Difference overlay", exact=True).click()
    img = page.frame_locator("iframe").first.locator(f"img[src*='overlay={comp_id}']")
    expect(img).to_have_count(1)
    src = img.get_attribute("src") or ""
    try:
        with_overlay = _get(page, url + src)
        plain = _get(page, url + src.replace(f"&overlay={comp_id}", ""))
        r.overlay_png = with_overlay.status == 200 and with_overlay.headers.get("content-type") == "image/png"
        r.overlay_differs = r.overlay_png and plain.status == 200 and with_overlay.body() != plain.body()
    except Error as exc:
        print(f"  item {item}: the overlay image did not load ({str(exc).splitlines()[0]})", flush=True)
    page.get_by_role("button", name="Accept as is").click()
    expect(page.get_by_text("Signed (accepted)", exact=False)).to_be_visible()
    r.signed = True
    return r


def open_items(c: Cluster) -> dict[int, int]:
    """Worklist item -> comparison id, for every result."""
    with session_scope(c.node_settings) as s:
        return {wi.id: wi.comparison_id for wi in s.exec(select(WorklistItem)).all()}  # type: ignore[misc]


def add_reviewer(c: Cluster) -> None:
    from dashboard import auth

    with session_scope(c.node_settings) as s:
        auth.create_user(s, REVIEWER, PASSWORD, "radiologist")


def dashboard_env(c: Cluster) -> dict[str, str]:
    """The dashboard beside the node: the node's settings (its data dir, the cluster's database)."""
    return {**as_env(c.node_settings), "PRIORWATCH_DASHBOARD_REFRESH_S": "0"}


def evidence_missing(c: Cluster) -> int:
    """Deliveries, jobs and worker log lines that say an evidence instance was missing."""
    with session_scope(c.node_settings) as s:
        n = sum(EVIDENCE_MISSING in (d.error or "") for d in s.exec(select(Delivery)).all())
        n += sum(EVIDENCE_MISSING in (j.error or "") for j in s.exec(select(Job)).all())
    for i in range(c.workers):
        n += (c.root / f"worker{i}.log").read_text(errors="replace").count(EVIDENCE_MISSING)
    return n


def urgent_notices(c: Cluster, hook: WebhookReceiver) -> tuple[int, int]:
    """(urgent results, those whose notice the receiver got exactly once with a good signature)."""
    with session_scope(c.node_settings) as s:
        urgent = {comp.id for comp in s.exec(select(Comparison).where(Comparison.urgent)).all()}  # type: ignore[arg-type]
    wait_deliveries(c, "webhook", len(urgent), 60.0)
    got = Counter(h.comparison_id for h in hook.hits if h.signature_ok)
    return len(urgent), sum(got[i] == 1 for i in urgent)


def check(c: Cluster, currents: list[list[Path]], jobs: list[Job], dashboard_url: str,
          hook: WebhookReceiver) -> Outcome:
    """Everything the proof asks of one site, after its jobs have finished."""
    o = Outcome(studies=len(currents))
    results = c.results()
    per_study = Counter(uid for uid, *_ in results)
    o.results, o.max_per_study = len(results), max(per_study.values(), default=0)
    o.with_prior = sum(1 for _, prior, status, _ in results if prior and status == "done")
    o.failed_jobs = [j.error or "" for j in jobs if j.state == JobState.failed]
    with session_scope(c.node_settings) as s:
        o.overlays_in_db = sum(comp.overlay_path == OVERLAY_IN_DATABASE for comp in s.exec(select(Comparison)).all())
        prior_ids = [i.id for i, st in s.exec(select(Instance, Study).join(Study, Study.id == Instance.study_id)  # type: ignore[arg-type]
                                               .where(Study.role == "prior")).all()]
    o.prior_instances, o.prior_instances_served = len(prior_ids), served_by_node(c, [i for i in prior_ids if i])
    drafts = wait_deliveries(c, "sr", o.studies, 120.0)
    o.preliminary_in_pacs = sum(d.state == "sent" and in_pacs(c, d.sop_instance_uid) is not None for d in drafts)
    reviews = review_in_dashboard(dashboard_url, open_items(c))
    o.overlays_shown = sum(r.overlay_png and r.overlay_differs for r in reviews.values())
    o.signed = sum(r.signed for r in reviews.values())
    finals = wait_deliveries(c, "final_sr", o.signed, SIGNED_SR_WAIT_S)
    o.signed_in_pacs = sum(d.state == "sent" and (in_pacs(c, d.sop_instance_uid) or {}).get("VerificationFlag")
                           == "VERIFIED" for d in finals)
    o.evidence_missing = evidence_missing(c)
    o.urgent, o.notices = urgent_notices(c, hook)
    o.leftovers = c.leftover_cache_files()
    o.per_worker = dict(c.jobs_per_worker())
    return o


def run(broker: str, patients: list[list[Path]], workers: int, root: Path, timeout_s: float) -> tuple[bool, str]:
    from tests.conftest import free_port
    from tests.dashboard.browser import dashboard_server

    priors, currents = patients[0::2], patients[1::2]
    hook = WebhookReceiver()
    t0 = time.monotonic()
    with Cluster(root, workers=workers, broker=broker, pacs=True, webhook=(hook.url, hook.secret)) as c:
        c.load_pacs(priors)
        c.send(currents)
        jobs = c.wait(len(currents), timeout_s)
        t_results = time.monotonic() - t0
        add_reviewer(c)
        (root / "dashboard").mkdir()
        with dashboard_server(root / "dashboard", free_port(), dashboard_env(c)) as url:
            o = check(c, currents, jobs, url, hook)
        isolated = c.isolated
    hook.close()
    line = (f"{broker}: {o.studies} studies (priors in Orthanc), {workers} workers in own mount namespaces: {isolated}; "
            f"{o.results} results (max per study {o.max_per_study}), {o.with_prior} compared with their prior, "
            f"{len(o.failed_jobs)} failed jobs; priors in the node's store {o.prior_instances_served}/{o.prior_instances} "
            f"instances; overlays in the database {o.overlays_in_db}, shown by the dashboard {o.overlays_shown}; "
            f"preliminary SRs in the PACS {o.preliminary_in_pacs}; signed in the dashboard {o.signed}, signed SRs in "
            f"the PACS {o.signed_in_pacs}; '{EVIDENCE_MISSING}' {o.evidence_missing}; cache files left {o.leftovers}; "
            f"urgent notices {o.notices}/{o.urgent}; jobs per worker {o.per_worker}; results in {t_results:.1f}s "
            f"({o.studies / t_results * 3600:.0f} studies/h) -> {'OK' if o.ok() else 'FAIL'}")
    if o.failed_jobs:
        line += f"\n  failed: {Counter(o.failed_jobs).most_common(3)}"
    return o.ok(), line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=30, help="current studies (one patient each, its prior in the PACS)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--broker", nargs="+", default=["redis"], choices=["redis", "rabbitmq"])
    ap.add_argument("--timeout", type=float, default=1800.0)
    a = ap.parse_args()
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="pw-noshare-") as tmp:
        t = time.monotonic()
        patients = Cluster.make_studies(Path(tmp) / "input", a.studies, urgent_every=URGENT_EVERY)
        print(f"made {a.studies} patients (prior + current) in {time.monotonic() - t:.1f}s", flush=True)
        for broker in a.broker:
            ok, line = run(broker, patients, a.workers, Path(tmp) / broker, a.timeout)
            print(line, flush=True)
            all_ok &= ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
