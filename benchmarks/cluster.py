"""A scaled-out site on one machine, for the no-shared-disk proof and the scale curve.

One node (Storage SCP, completion monitor, its HTTP store) in this process, one shared local
Triton, and K Celery worker processes, each with its own private data dir and
`worker_fetch=node`. Run as root, each worker runs in its own mount namespace where the node's
data dir is hidden under an empty tmpfs and its own data dir is a tmpfs of its own, so a worker
*cannot* read the node's disk and nothing it writes to disk is seen by the node or the dashboard:
instances come over HTTP, results and artefacts go to the database or the node's store.
With `pacs=True` a real Orthanc is the PACS: priors are loaded there (the workers retrieve them
by C-GET and file them in the node's store), the workers send preliminary SRs to it, and worker 0
embeds beat, whose sweep sends the signed SRs (sweeper away from the node too).
State in PostgreSQL (a schema of its own), messages through Redis or RabbitMQ.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psycopg
from sqlmodel import select

from comparison import DEFAULT_MODEL_REPOSITORY, LocalTriton, synthetic
from dicom_node import StorageNode, send_files
from dicom_node.serve_store import node_service
from priorwatch.db import init_db, session_scope
from priorwatch.metrics import HttpService
from priorwatch.models import Comparison, Job, JobState, Study
from priorwatch.settings import Settings, as_env
from workers.node_fetch import cache_root
from workers.runtime import free_port, worker_command
from tests.peers import Orthanc

PG_ADMIN = "host=127.0.0.1 dbname=test user=postgres"
BRIDGE_WAIT_S = 60  # seconds a worker's namespace waits for its forwarded ports before giving up
SWEEP_S = 0.5  # with a PACS: serve's sweeper interval; worker 0's beat sweeps every 10x this (5 s)
BROKERS = {"redis": "redis://127.0.0.1:6379/7", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}
SENDER_AE = "CR01"


@dataclass
class Sent:
    study_uid: str
    sent_at: float  # time.time() when its association ended


@dataclass
class Cluster:
    """Context manager: `with Cluster(tmp, workers=3, broker="redis") as c: c.send(...)`."""

    root: Path
    workers: int = 3
    broker: str = "redis"
    triton_instances: int | None = None  # model instances per Triton; None: as the shipped config says
    worker_concurrency: int = 1
    pacs: bool = False
    webhook: tuple[str, str] | None = None  # (URL, secret) of the urgent notice's receiver
    netns: bool = False  # each worker also in a network namespace of its own (root): `bridges` below
    tritons: int = 1  # Triton servers; worker i uses server i % tritons
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.schema = f"pw_cluster_{uuid.uuid4().hex[:10]}"
        self.token = secrets.token_hex(16)
        self.isolated = os.geteuid() == 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._tritons: list[LocalTriton] = []
        self._bridges: list[subprocess.Popen[bytes]] = []
        self._node: StorageNode | None = None
        self._http: HttpService | None = None
        self._repo_tmp: tempfile.TemporaryDirectory[str] | None = None
        self.orthanc: Orthanc | None = None

    # -- start / stop ------------------------------------------------------------------------
    @staticmethod
    def shipped_instances() -> int:
        """The registration model's instance count in the shipped Triton config."""
        cfg = (DEFAULT_MODEL_REPOSITORY / "registration" / "config.pbtxt").read_text()
        m = re.search(r"count: (\d+)", cfg)
        return int(m.group(1)) if m else 1

    def _model_repository(self) -> Path:
        if self.triton_instances in (None, self.shipped_instances()):
            return DEFAULT_MODEL_REPOSITORY
        self._repo_tmp = tempfile.TemporaryDirectory(prefix="pw-models-")
        repo = Path(self._repo_tmp.name) / "models"
        shutil.copytree(DEFAULT_MODEL_REPOSITORY / "registration", repo / "registration", symlinks=True)
        cfg = repo / "registration" / "config.pbtxt"
        cfg.write_text(re.sub(r"count: \d+", f"count: {self.triton_instances}", cfg.read_text()))
        return repo

    def __enter__(self) -> "Cluster":
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{self.schema}"')
        db = f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{self.schema}"
        repo = self._model_repository()
        for t in range(self.tritons):
            self._tritons.append(LocalTriton(model_repository=repo, grpc_port=free_port(), http_port=free_port(),
                                             metrics_port=None, startup_timeout_s=120.0,
                                             log_path=self.root / f"triton{t}.log").start())
        dicom_port = free_port()
        self.node_settings = Settings(
            data_dir=self.root / "node", database_url=db, broker_url=BROKERS[self.broker],
            queue_name=f"pw-cluster-{uuid.uuid4().hex[:8]}", dicom_port=dicom_port, receive_processes=1,
            allowed_calling_aes=[SENDER_AE], completion_grace_s=0.3, triton_url=self._tritons[0].grpc_url,
            node_http_port=free_port(), node_token=self.token, task_max_retries=3, task_retry_backoff_s=0.5,
            worker_concurrency=self.worker_concurrency, **self._pacs_settings(dicom_port),
        )
        init_db(self.node_settings)
        self._node = StorageNode(self.node_settings).start()
        self._http = node_service(self.node_settings).start()
        if self.netns:
            self._start_bridges()
        for i in range(self.workers):
            self._procs.append(self._spawn_worker(i))
        return self

    def _pacs_settings(self, node_port: int) -> dict[str, object]:
        """With `pacs`: a real Orthanc answers for priors (C-GET) and takes the SRs; sweeps are
        frequent so signed SRs go out within seconds of a sign-off."""
        hook = {"urgent_webhook_url": self.webhook[0], "urgent_webhook_secret": self.webhook[1]} if self.webhook else {}
        if not self.pacs:
            return hook
        self.orthanc = Orthanc(self.root / "orthanc", modalities={"pw": ("PRIORWATCH", "127.0.0.1", node_port)}).start()
        return {"pacs_ae_title": self.orthanc.aet, "pacs_host": "127.0.0.1",
                "pacs_port": self.orthanc.dicom_port, "pacs_retrieve": "c-get", "send_sr_to_pacs": True,
                "sweep_interval_s": SWEEP_S, **hook}

    def load_pacs(self, studies: list[list[Path]]) -> None:
        """Put studies (priors) in the PACS only: the node learns of them from the workers' queries."""
        assert self.orthanc is not None, "Cluster(pacs=True) has a PACS"
        for paths in studies:
            for p in paths:
                self.orthanc.upload(p)

    # -- network namespaces: a worker reaches the services only through these bridges -----------
    def _services(self) -> dict[str, int]:
        """The TCP ports a worker needs, by name: database, broker, each Triton, the node's store."""
        broker_port = 6379 if self.broker == "redis" else 5672
        ports = {"postgres": 5432, "broker": broker_port, "node": self._http.port}  # type: ignore[union-attr]
        ports.update({f"triton{t}": int(tr.grpc_url.rsplit(":", 1)[1]) for t, tr in enumerate(self._tritons)})
        return ports

    def _start_bridges(self) -> None:
        """One host-side socat per service: a Unix socket in `root/bridges` -> 127.0.0.1:port. A
        worker in its own network namespace has only its own loopback; the socket file (a path,
        not an address) is its one way out, as a network link to the site would be."""
        if not self.isolated:
            raise RuntimeError("network namespaces need root")
        (self.root / "bridges").mkdir(mode=0o700)
        for name, port in self._services().items():
            sock = self.root / "bridges" / f"{name}.sock"
            self._bridges.append(subprocess.Popen(
                ["socat", f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            deadline = time.monotonic() + 10
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _inside_bridges(self) -> str:
        """Shell run inside a new network namespace before the worker: loopback up, and on it each
        service's port forwarded to its bridge socket (the worker's settings name 127.0.0.1)."""
        ports = self._services()
        fwd = " ".join(f"socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr "
                       f"UNIX-CONNECT:{self.root / 'bridges' / (name + '.sock')} &" for name, port in ports.items())
        # the worker starts once every forwarded port answers (a fixed pause was too short under load)
        wait = " ".join(f"until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.1; "
                        f"[ $SECONDS -gt {BRIDGE_WAIT_S} ] && exit 1; done;" for port in ports.values())
        return f"ip link set lo up || exit 1; {fwd} {wait} "

    def bridge_cpu_s(self) -> float:
        return sum(_tree_cpu(p.pid) for p in self._bridges)

    def worker_dir(self, i: int) -> Path:
        return self.root / f"worker{i}"

    def _spawn_worker(self, i: int) -> subprocess.Popen[bytes]:
        d = self.worker_dir(i)
        d.mkdir(parents=True)
        ws = self.node_settings.model_copy(update={
            "data_dir": d, "worker_fetch": "node", "node_url": f"http://127.0.0.1:{self._http.port}",  # type: ignore[union-attr]
            "node_http_port": None, "triton_url": self._tritons[i % len(self._tritons)].grpc_url,
        })
        env = {**os.environ, **as_env(ws)}
        cmd = worker_command(ws, name=f"w{i}", beat=self.pacs and i == 0)  # worker 0's beat sweeps the outbox
        if self.isolated:  # the node's data dir, seen from this worker: an empty, unreadable tmpfs;
            # its own data dir: a tmpfs only it sees (what it writes there never reaches a reader)
            cmd = ["unshare", "--mount", "--propagation", "private", *(["--net"] if self.netns else []), "bash", "-c",
                   'mount -t tmpfs -o size=1m,mode=000 none "$0" && mount -t tmpfs -o size=512m,mode=700 none "$1" '
                   f'&& shift || exit 1; {self._inside_bridges() if self.netns else ""}exec "$@"',
                   str(self.node_settings.data_dir), str(d), *cmd]
        log = open(self.root / f"worker{i}.log", "wb")
        try:
            return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=d, start_new_session=True)
        finally:
            log.close()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self._procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            try:  # what the worker's shell started beside it (namespace bridge ends) goes with it
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._http is not None:
            self._http.stop()
        if self._node is not None:
            self._node.stop()
        for b in self._bridges:
            b.terminate()
            b.wait(timeout=10)
        for t in self._tritons:
            t.stop()
        if self.orthanc is not None:
            self.orthanc.stop()
        if self._repo_tmp is not None:
            self._repo_tmp.cleanup()
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        except psycopg.Error:
            pass
        if self.broker == "redis":
            try:
                import redis

                r = redis.Redis.from_url(BROKERS["redis"])
                r.delete(self.node_settings.queue_name)
            except Exception:  # noqa: BLE001 - best effort
                pass

    # -- traffic and results ----------------------------------------------------------------
    @staticmethod
    def make_studies(out: Path, patients: int, scale: float = 0.25, urgent_every: int = 0) -> list[list[Path]]:
        """Studies in send order: each patient's prior, then its current (2 per patient). With
        `urgent_every` = k, every k-th patient's current has a new pneumothorax (an urgent notice)."""
        studies: list[list[Path]] = []
        for p in range(patients):
            urgent = urgent_every > 0 and p % urgent_every == 0
            pair = synthetic.make_pair(out / f"p{p}", f"PWCL{p:05d}", seed=p, scale=scale,
                                       **({"lesion": "pneumothorax", "side": "left"} if urgent else {}))
            studies += [list(pair.prior_paths), list(pair.current_paths)]
        return studies

    def send(self, studies: list[list[Path]], pace_s: float = 0.0) -> None:
        port = self.node_settings.dicom_port
        for paths in studies:
            statuses = send_files(paths, "127.0.0.1", port, self.node_settings.ae_title, calling_ae=SENDER_AE)
            if any(st != 0 for st in statuses):
                raise RuntimeError(f"C-STORE failed: {statuses}")
            self.sent.append(Sent(study_uid=_study_uid(paths[0]), sent_at=time.time()))
            if pace_s:
                time.sleep(pace_s)

    def wait(self, n_jobs: int, timeout_s: float) -> list[Job]:
        deadline = time.monotonic() + timeout_s
        jobs: list[Job] = []
        while time.monotonic() < deadline:
            with session_scope(self.node_settings) as s:
                jobs = list(s.exec(select(Job)).all())
            if sum(j.state in (JobState.done, JobState.failed) for j in jobs) >= n_jobs:
                break
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError("a worker process died; see its log in " + str(self.root))
            time.sleep(0.5)
        return jobs

    def results(self) -> list[tuple[str, str | None, str, float]]:
        """(study UID, prior study UID, status, seconds from study complete to result) per comparison."""
        with session_scope(self.node_settings) as s:
            rows = s.exec(select(Comparison, Study).join(Study, Study.id == Comparison.study_id)).all()  # type: ignore[arg-type]
            uid_of = {st.id: st.study_uid for st in s.exec(select(Study)).all()}
        return [(st.study_uid, uid_of.get(c.prior_study_id) if c.prior_study_id else None, c.status,
                 (c.created_at - (st.completed_at or st.first_received_at)).total_seconds()) for c, st in rows]

    def span_s(self) -> float:
        """Seconds from the first instance received to the last result stored."""
        with session_scope(self.node_settings) as s:
            first = min(st.first_received_at for st in s.exec(select(Study)).all())
            last = max(c.created_at for c in s.exec(select(Comparison)).all())
        return (last - first).total_seconds()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by Triton (with its model stubs), the workers and this process
        (the node) and the host ends of the namespace bridges, from /proc: what a study costs, whatever else the machine is doing."""
        triton = sum(_tree_cpu(t.pid) for t in self._tritons if t.pid)
        workers = sum(_tree_cpu(p.pid) for p in self._procs)  # with their in-namespace bridge ends
        t = os.times()
        return {"triton": triton, "workers": workers, "node": t.user + t.system, "bridges": self.bridge_cpu_s()}

    def jobs_per_worker(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for i in range(self.workers):
            text = (self.root / f"worker{i}.log").read_text(errors="replace")
            out[f"worker{i}"] = len(re.findall(r"job \d+ study \S+ v\d+: ", text))
        return out

    def leftover_cache_files(self) -> int:
        """Files left in the workers' caches, counted where each worker sees its disk (its own
        mount namespace when isolated: from outside its data dir is not the one it writes)."""
        n = 0
        for i, proc in enumerate(self._procs):
            root = cache_root(self.node_settings.model_copy(update={"data_dir": self.worker_dir(i)}))
            if self.isolated:
                out = subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "find", str(root), "-type", "f"],
                                     capture_output=True, text=True, timeout=30)
                n += len(out.stdout.split())
            else:
                n += sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
        return n


def _study_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).StudyInstanceUID)


def _tree_cpu(pid: int) -> float:
    """utime + stime of a process and all its live descendants, plus those of the children they
    reaped (cutime + cstime: a socat bridge forks one per connection), in seconds (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)  # ppid, cpu
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (pp, _) in stats.items() if pp == p]
    return total
