"""Runs the pieces of a PriorWatch site together: local Triton (unless a remote one is
configured), the Celery worker, beat, the sweeper and the DICOM node. Used by `serve` and `demo`.

`serve` supervises what it starts: a child that dies (Triton, the worker, beat) is restarted
with a printed line and a growing back-off; on exit every child's process group is ended; and
every child dies with `serve` even when `serve` is killed with -9 (PR_SET_PDEATHSIG, set in
the child before it runs anything). It refuses to start when a port it needs is taken, rather
than sharing a broker with an orphan of an earlier run. The local Triton listens on loopback
only, with `--model-control-mode=none` on a repository holding just the models it serves: no
client can load or unload a model.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from comparison.triton_server import LocalTriton
from comparison.vlm.serving import vlm_env
from priorwatch.ports import ListenPort, PortConflict, check, declared_ports
from priorwatch.settings import Settings, as_env
from workers.orphan_guard import set_pdeathsig

if TYPE_CHECKING:  # imported where they start: the port check runs before their ~1 s of imports
    from dicom_node import StorageNode
    from workers.sweeper import SweeperThread

log = logging.getLogger(__name__)

ORPHAN_GUARD = Path(__file__).resolve().parent / "orphan_guard.py"
STABLE_RUN_S = 60.0  # a child that ran this long before dying restarts after the initial back-off again
STOP_TIMEOUT_S = 30.0  # a worker's warm shutdown: let it finish the running job


PortInUse = PortConflict  # the name callers (serve, demo) catch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_ports(ports: list[ListenPort]) -> None:
    """Raise PortInUse naming every listener whose port is taken or wanted twice, one line each."""
    check(ports)


def worker_command(settings: Settings, name: str = "priorwatch", beat: bool = False) -> list[str]:
    """The Celery worker. `beat=True` embeds beat (`-B`): only for a lone `priorwatch worker`;
    `serve` runs beat as its own supervised process instead."""
    beat_args = ["-B", "-s", str(settings.data_dir / "celerybeat-schedule")] if beat else []
    return [
        sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "--pool=threads", f"--concurrency={settings.worker_concurrency}",
        "-Q", settings.queue_name, "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"{name}-{os.getpid()}@%h", *beat_args,
    ]


def beat_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel=INFO",
            "-s", str(settings.data_dir / "celerybeat-schedule")]


class ServedTriton(LocalTriton):
    """The local Triton as serve runs it: model control closed (`none` mode on a repository of
    symlinks to just the served models), loopback only, and dying with its parent."""

    def command(self, backend_dir: Path) -> list[str]:
        repo = backend_dir.parent / "models"
        repo.mkdir(exist_ok=True)
        for m in self.models:
            link = repo / m
            if not link.exists():
                link.symlink_to(self.model_repository / m, target_is_directory=True)
        cmd = [c for c in super().command(backend_dir)
               if not c.startswith(("--model-repository=", "--model-control-mode=", "--load-model="))]
        cmd[1:1] = [f"--model-repository={repo}", "--model-control-mode=none"]
        return [sys.executable, "-S", "-E", str(ORPHAN_GUARD), str(os.getpid()), "--", *cmd]


class Child:
    """One supervised child: how to start it, whether it lives, how to stop it."""

    def __init__(self, name: str, start: Callable[[], None], exit_code: Callable[[], int | None],
                 stop: Callable[[], None], settings: Settings) -> None:
        self.name = name
        self._start, self.exit_code, self.stop = start, exit_code, stop
        self.backoff = settings.restart_backoff_s
        self.backoff_max = settings.restart_backoff_max_s
        self.initial_backoff = settings.restart_backoff_s
        self.started_at = time.monotonic()
        self.restart_at: float | None = None
        self.restarts = 0

    def start(self) -> None:
        self._start()
        self.started_at = time.monotonic()

    def check(self, now: float) -> None:
        """Schedule a restart when it died; restart when the back-off has passed."""
        if self.restart_at is None:
            code = self.exit_code()
            if code is None:
                return
            lived = now - self.started_at
            self.backoff = self.initial_backoff if lived >= STABLE_RUN_S else self.backoff
            self.restart_at = now + self.backoff
            how = f"signal {-code}" if code < 0 else f"code {code}"
            _say(f"{self.name} exited ({how}) after {lived:.1f}s; restarting in {self.backoff:.1f}s")
            self.backoff = min(self.backoff * 2, self.backoff_max)
            return
        if now < self.restart_at:
            return
        try:
            self.start()
        except Exception as exc:
            self.restart_at = now + self.backoff
            _say(f"{self.name} did not restart ({type(exc).__name__}: {str(exc)[:200]}); next try in {self.backoff:.1f}s")
            self.backoff = min(self.backoff * 2, self.backoff_max)
            return
        self.restart_at = None
        self.restarts += 1
        _say(f"{self.name} restarted (restart {self.restarts})")


def _say(line: str) -> None:
    log.warning("supervisor: %s", line)
    print(f"priorwatch: {line}", file=sys.stderr, flush=True)


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A child in its own process group (stopped as a group) that dies with this process."""
    with open(log_path, "ab") as out:  # the child keeps its own handle
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=set_pdeathsig)


def _end_group(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL to the child's whole process group."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything it left in its group
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Runtime:
    """Start order: Triton, then workers and beat, then the node (so nothing accepted waits on a
    dead engine). `wait_forever()` supervises until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, *, workers: bool = True, node: bool = True, beat: bool = False,
                 services: bool = False) -> None:
        self.settings = settings
        self.want_workers = workers
        self.want_node = node
        self.want_beat = beat  # periodic tasks (monitoring snapshots, the sweep) in their own process
        self.want_services = services  # other rooms' listeners (HL7 intake), by entry point
        self.services: list[object] = []
        self.triton: LocalTriton | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self.node: StorageNode | None = None
        self.sweeper: SweeperThread | None = None
        self.children: list[Child] = []
        self._stopping = False

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def ports(self) -> list[ListenPort]:
        """Every port this runtime will listen on (checked before anything starts)."""
        s = self.settings
        out: list[ListenPort] = []
        if self.want_node:  # TLS DICOM, when set, is on this same port
            out.append(ListenPort("DICOM Storage SCP", "PRIORWATCH_DICOM_PORT", s.dicom_host, s.dicom_port))
        if s.triton_url is None:
            out += [ListenPort("local Triton gRPC", "PRIORWATCH_TRITON_GRPC_PORT", "127.0.0.1", s.triton_grpc_port),
                    ListenPort("local Triton HTTP", "PRIORWATCH_TRITON_HTTP_PORT", "127.0.0.1", s.triton_http_port),
                    ListenPort("local Triton metrics", "PRIORWATCH_TRITON_METRICS_PORT", "127.0.0.1",
                               s.triton_metrics_port)]
        if self.want_workers and s.worker_http_port is not None:
            out.append(ListenPort("worker HTTP (health, metrics)", "PRIORWATCH_WORKER_HTTP_PORT", s.worker_http_host,
                                  s.worker_http_port))
        if self.want_services:
            if s.node_http_port is not None:  # dicom_node.serve_store's service
                out.append(ListenPort("node HTTP store", "PRIORWATCH_NODE_HTTP_PORT", s.node_http_host,
                                      s.node_http_port))
            out += declared_ports(s)  # other rooms' listeners (HL7/MLLP...)
        return out

    def start(self) -> "Runtime":
        s = self.settings
        check_ports(self.ports())  # before anything starts, and before the heavy imports below
        from priorwatch.db import init_db

        s.ensure_dirs()
        self.log_dir.mkdir(exist_ok=True)
        init_db(s)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        s = self.settings
        if s.triton_url is None:
            models: tuple[str, ...] = ("registration",)
            env: dict[str, str] = {}
            if s.vlm_model_dir:
                # The Triton model reads its VLM settings from PRIORWATCH_VLM_* in its environment.
                env = vlm_env(s.vlm_model_dir, dtype=s.vlm_dtype, device=s.vlm_device,
                              max_new_tokens=s.vlm_max_new_tokens, family=s.vlm_family,
                              trust_remote_code=s.vlm_trust_remote_code)
                models = ("registration", "vlm")
            self.triton = ServedTriton(
                models=models,
                env=env,
                startup_timeout_s=s.triton_startup_timeout_s,
                grpc_port=s.triton_grpc_port,
                http_port=s.triton_http_port,
                metrics_port=s.triton_metrics_port,
                log_path=self.log_dir / "triton.log",
            )
            triton = self.triton

            def start_triton() -> None:
                triton.stop()  # a dead one: its temp folder and shared memory first
                triton.start()

            child = Child("tritonserver", start_triton,
                          lambda: None if triton.is_running() else _triton_code(triton), triton.stop, s)
            child.start()
            self.children.append(child)
            s = self.settings = s.model_copy(update={"triton_url": triton.grpc_url})
        if self.want_workers:
            child = Child("worker", self._start_worker, lambda: self.worker.poll() if self.worker else 0,
                          lambda: _end_group(self.worker, STOP_TIMEOUT_S), s)
            child.start()
            self.children.append(child)
        if self.want_beat:
            child = Child("beat", self._start_beat, lambda: self.beat.poll() if self.beat else 0,
                          lambda: _end_group(self.beat, 10.0), s)
            child.start()
            self.children.append(child)
        if self.want_workers or self.want_node:
            from workers.sweeper import SweeperThread

            self.sweeper = SweeperThread(s)
            self.sweeper.start()
        if self.want_node:
            from dicom_node import StorageNode

            self.node = StorageNode(s)
            self.node.start()
        if self.want_services:
            for ep in entry_points(group="priorwatch.services"):
                try:
                    svc = ep.load()(s)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise PortInUse(f"cannot start: the {ep.name} service's port is already in use ({exc}); "
                                        f"stop what holds it or choose another port") from exc
                    raise
                if svc is not None:
                    self.services.append(svc)
                    log.info("started service %s", ep.name)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **{k: str(v) for k, v in as_env(self.settings).items()}}

    def _start_worker(self) -> None:
        _end_group(self.worker, 0)  # a dead one's group, if anything is left in it
        self.worker = _spawn(worker_command(self.settings), self._env(), self.log_dir / "worker.log")

    def _start_beat(self) -> None:
        _end_group(self.beat, 0)
        self.beat = _spawn(beat_command(self.settings), self._env(), self.log_dir / "beat.log")

    def supervise_once(self) -> None:
        """Restart whatever died (after its back-off)."""
        if self._stopping:
            return
        now = time.monotonic()
        for child in self.children:
            child.check(now)

    def stop(self) -> None:
        self._stopping = True
        for svc in self.services:
            svc.stop()  # type: ignore[attr-defined]
        self.services = []
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None
        for child in reversed(self.children):  # beat, worker (warm shutdown), then Triton
            try:
                child.stop()
            except Exception as exc:
                log.error("stopping %s failed: %s", child.name, exc)
        self.children = []
        self.worker = self.beat = None
        self.triton = None

    def __enter__(self) -> "Runtime":
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def wait_forever(self) -> None:
        stop = {"now": False}

        def _handler(signum: int, _frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)
        while not stop["now"]:
            self.supervise_once()
            time.sleep(0.5)


def _triton_code(triton: LocalTriton) -> int:
    proc = getattr(triton, "_proc", None)
    code = proc.poll() if proc is not None else None
    return code if code is not None else 1
