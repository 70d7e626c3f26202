"""Fault injection on a real site: `priorwatch serve` as its own process (Triton, the Celery
worker, beat, the node), studies sent with DCMTK `storescu`, an HMAC-checking webhook receiver
that counts every hit, and kill -9 of a chosen process mid-run. Shared by the short in-suite
test (tests/faults) and the long run (benchmarks/faults.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlmodel import select

from comparison import synthetic
from comparison.synthetic import Change, FindingType, PairSpec, Side, Zone
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Delivery, Job, JobState, Study
from priorwatch.settings import Settings, as_env
from tests.conftest import free_port  # one port registry for the whole test process

ARCHIVE, MODALITY = "PW_ARCHIVE", "PW_MODALITY"
SECRET = "fault-suite-secret"
STORESCU = "/usr/bin/storescu"  # DCMTK's (the venv's bin has pynetdicom's own storescu)




# --- studies -----------------------------------------------------------------------------------


def make_cases(out: Path, n: int, seed: int = 0) -> list[PairSpec]:
    """`n` patients with a prior each: every fourth a new pneumothorax (urgent), the rest a new
    nodule or a stable pair. Small images (scale 0.25) so a run is about faults, not compute."""
    kinds = [(FindingType.pneumothorax, Change.new), (FindingType.nodule, Change.new), (None, Change.stable),
             (FindingType.nodule, Change.new)]
    cases = []
    for i in range(n):
        lesion, change = kinds[i % 4]
        cases.append(synthetic.make_pair(out, f"PWF-{seed:02d}-{i:04d}", lesion, change, Side.left if i % 2 else Side.right,
                                         Zone.upper, seed=seed * 1000 + i, interval_days=30 + i, scale=0.25))
    return cases


def storescu(paths: list[Path], port: int, calling: str, called: str = "PRIORWATCH", timeout: float = 300) -> None:
    env = {**os.environ, "TCP_NODELAY": "1"}
    subprocess.run([STORESCU, "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, paths)],
                   check=True, env=env, capture_output=True, timeout=timeout)


def send_cases(cases: list[PairSpec], port: int) -> None:
    """Priors from the archive AE (filed, no job), then the current studies from a modality."""
    storescu([p for c in cases for p in c.prior_paths], port, ARCHIVE)
    storescu([p for c in cases for p in c.current_paths], port, MODALITY)


# --- the webhook receiver ----------------------------------------------------------------------


@dataclass
class Hit:
    key: str
    comparison_id: int
    signature_ok: bool


@dataclass
class WebhookReceiver:
    """Counts every POST; checks the HMAC-SHA256 signature over "<timestamp>.<body>". A notice is one
    Idempotency-Key: a receiver de-duplicates on it (`Outcome.redeliveries`)."""

    secret: str = SECRET
    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ts = self.headers.get("X-PriorWatch-Timestamp", "")
                want = "sha256=" + hmac.new(receiver.secret.encode(), ts.encode() + b"." + body,
                                            hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(want, self.headers.get("X-PriorWatch-Signature", ""))
                receiver.hits.append(Hit(self.headers.get("Idempotency-Key", ""), json.loads(body)["comparison_id"], ok))
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/urgent"

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


# --- Redis without persistence -----------------------------------------------------------------


class OwnRedis:
    """Our own redis-server on a free port, no RDB, no AOF: a kill -9 loses every message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "OwnRedis":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


# --- the site under test -----------------------------------------------------------------------


def site_settings(data_dir: Path, hook: WebhookReceiver, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        data_dir=data_dir,
        dicom_port=free_port(), triton_grpc_port=free_port(), triton_http_port=free_port(),
        triton_metrics_port=free_port(),
        allowed_calling_aes=[ARCHIVE, MODALITY], prior_source_aes=[ARCHIVE],
        completion_grace_s=0.3, queue_name=f"pw-faults-{uuid.uuid4().hex[:8]}",
        urgent_webhook_url=hook.url, urgent_webhook_secret=hook.secret,
        # Fast fault detection for a short run; the defaults are minutes (see priorwatch/settings.py).
        lease_ttl_s=6.0, lease_heartbeat_s=1.0, job_start_timeout_s=25.0, sweep_interval_s=1.0,
        task_retry_backoff_s=0.5, task_retry_backoff_max_s=10.0, task_max_retries=8,
        delivery_backoff_s=0.5, delivery_backoff_max_s=4.0, triton_timeout_s=20.0,
        receive_processes=1,
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every descendant of `pid`, from /proc."""
    parent: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmd[int(d)] = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                out.append((c, cmd.get(c, "")))
                todo.append(c)
    return out


class Site:
    """`priorwatch serve` in its own session, with the settings' environment."""

    def __init__(self, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = {**os.environ, **{k: str(v) for k, v in as_env(settings).items()},
                    "PRIORWATCH_MONITORING_HL7_ENABLED": "false", **(extra_env or {})}
        self.env.pop("PRIORWATCH_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 180.0) -> "Site":
        self.starts += 1
        self.out = self.log_dir / f"serve-{self.starts}.out"
        exe = str(Path(sys.executable).parent / "priorwatch")
        self.proc = subprocess.Popen([exe, "serve"], env=self.env, stdout=open(self.out, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}:\n{self.out.read_text()[-3000:]}")
            if b"listening on" in self.out.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"serve did not start in {timeout}s:\n{self.out.read_text()[-3000:]}")

    def child(self, needle: str) -> int:
        """The descendant whose command line holds `needle` ("bin/tritonserver": the server itself,
        by its program name, not the guard that runs it)."""
        assert self.proc is not None
        for pid, cmd in _children(self.proc.pid):
            if (cmd.split(" ", 1)[0].endswith(needle)) if needle == "bin/tritonserver" else (needle in cmd):
                return pid
        raise LookupError(f"no child of serve matching {needle!r}")

    def descendants(self) -> list[tuple[int, str]]:
        return _children(self.proc.pid) if self.proc else []

    def kill9(self, what: str) -> int:
        """kill -9 of serve itself ("serve") or of its child matching `what`; returns the pid."""
        assert self.proc is not None
        if what == "serve":
            pid = self.proc.pid
            os.kill(pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
            return pid
        pid = self.child({"worker": "celery -A workers.app worker", "beat": "celery -A workers.app beat",
                          "tritonserver": "bin/tritonserver"}[what])
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("serve-*.out")))


# --- observing and checking --------------------------------------------------------------------


def progress(settings: Settings) -> dict[str, int]:
    with session_scope(settings) as s:
        jobs = s.exec(select(Job.state)).all()
        comps = s.exec(select(Comparison.id)).all()
    c = Counter(jobs)
    return {"jobs": len(jobs), "done": c[JobState.done], "failed": c[JobState.failed],
            "running": c[JobState.running], "queued": c[JobState.queued], "comparisons": len(comps)}


def wait_for(settings: Settings, pred: "callable[[dict[str, int]], bool]", timeout: float) -> dict[str, int]:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    p = progress(settings)
    while time.monotonic() < deadline:
        p = progress(settings)
        if pred(p):
            return p
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s: {p}")


def wait_running(settings: Settings, min_done: int, timeout: float = 300) -> dict[str, int]:
    """Until at least `min_done` results exist and a job is running: the moment to strike."""
    return wait_for(settings, lambda p: p["comparisons"] >= min_done and p["running"] >= 1, timeout)


@dataclass
class Outcome:
    studies: int
    comparisons: int
    per_study: Counter[int]
    jobs_failed: int
    urgent_ids: set[int]
    hits: list[Hit]
    deliveries_unsent: int
    attempts: Counter[int]

    @property
    def redeliveries(self) -> int:
        """POSTs beyond the first per Idempotency-Key: a send whose answer a process death cut off is
        repeated, with the same key, once its claim expires (the receiver de-duplicates on the key)."""
        return len(self.hits) - len({h.key for h in self.hits})

    def problems(self, n: int, deaths: int = 0) -> list[str]:
        """What went wrong. `deaths`: processes killed while they may have held a send in flight
        (each sends one notice at a time), so at most that many notices may be POSTed again."""
        out = []
        if self.studies != n:
            out.append(f"{self.studies} incoming studies indexed, expected {n}")
        if self.comparisons != n or any(v != 1 for v in self.per_study.values()):
            out.append(f"{self.comparisons} comparisons for {len(self.per_study)} studies; "
                       f"duplicates {[k for k, v in self.per_study.items() if v != 1]}")
        if self.jobs_failed:
            out.append(f"{self.jobs_failed} failed jobs")
        keys = Counter(h.key for h in self.hits)
        if {h.comparison_id for h in self.hits} != self.urgent_ids:
            out.append(f"webhook hits for {sorted({h.comparison_id for h in self.hits})}, urgent {sorted(self.urgent_ids)}")
        by_key: dict[str, set[int]] = {}
        for h in self.hits:
            by_key.setdefault(h.key, set()).add(h.comparison_id)
        if any(len(ids) != 1 for ids in by_key.values()) or len(by_key) != len(self.urgent_ids):
            out.append(f"urgent notices not one key per result: {by_key}")
        if self.redeliveries > deaths:
            out.append(f"urgent notices sent more than once without a death to explain it: "
                       f"{[k for k, v in keys.items() if v != 1]} ({deaths} deaths)")
        if not all(h.signature_ok for h in self.hits):
            out.append("a webhook call without a valid signature")
        if self.deliveries_unsent:
            out.append(f"{self.deliveries_unsent} deliveries not sent")
        return out


def outcome(settings: Settings, hook: WebhookReceiver) -> Outcome:
    with session_scope(settings) as s:
        studies = s.exec(select(Study.id).where(Study.role == "incoming")).all()
        comps = s.exec(select(Comparison)).all()
        failed = s.exec(select(Job.id).where(Job.state == JobState.failed)).all()
        unsent = s.exec(select(Delivery.id).where(Delivery.state != "sent")).all()
        attempts = Counter(s.exec(select(Job.attempts)).all())
    return Outcome(studies=len(studies), comparisons=len(comps), per_study=Counter(c.study_id for c in comps),
                   jobs_failed=len(failed), urgent_ids={int(c.id) for c in comps if c.urgent},  # type: ignore[arg-type]
                   hits=list(hook.hits), deliveries_unsent=len(unsent), attempts=attempts)


def wait_settled(settings: Settings, hook: WebhookReceiver, n: int, timeout: float) -> Outcome:
    """Until every study has its result and every urgent notice went out (or the timeout)."""
    deadline = time.monotonic() + timeout
    o = outcome(settings, hook)
    while time.monotonic() < deadline:
        o = outcome(settings, hook)
        if o.comparisons >= n and len(o.per_study) >= n and not o.deliveries_unsent and \
                {h.comparison_id for h in o.hits} >= o.urgent_ids:
            time.sleep(2.0)  # a late duplicate would show up now
            return outcome(settings, hook)
        time.sleep(0.5)
    return o


def no_orphans(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids among `pids` still alive after `timeout` (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = []
        for p in pids:
            try:
                state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(p)
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def cleanup_dir(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)
