"""Runs the pieces of a PriorWatch site together: local Triton (unless a remote one is
configured), the Celery worker process(es) and the DICOM node. Used by `serve` and `demo`."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType

from comparison import LocalTriton
from comparison.vlm import vlm_env
from dicom_node import StorageNode
from priorwatch.db import init_db
from priorwatch.settings import Settings, as_env

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_command(settings: Settings, name: str = "priorwatch", beat: bool = False) -> list[str]:
    beat_args = ["-B", "-s", str(settings.data_dir / "celerybeat-schedule")] if beat else []
    return [
        sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "--pool=threads", f"--concurrency={settings.worker_concurrency}",
        "-Q", settings.queue_name, "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"{name}-{os.getpid()}@%h", *beat_args,
    ]



class Runtime:
    """Start order: Triton, then workers, then the node (so nothing accepted waits on a dead engine)."""

    def __init__(self, settings: Settings, *, workers: bool = True, node: bool = True, beat: bool = False,
                 services: bool = False) -> None:
        self.settings = settings
        self.want_workers = workers
        self.want_node = node
        self.want_beat = beat  # periodic tasks (monitoring snapshots) in the embedded worker
        self.want_services = services  # other rooms' listeners (HL7 intake), by entry point
        self.services: list[object] = []
        self.triton: LocalTriton | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.node: StorageNode | None = None

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def start(self) -> "Runtime":
        s = self.settings
        s.ensure_dirs()
        self.log_dir.mkdir(exist_ok=True)
        init_db(s)
        if s.triton_url is None:
            models: tuple[str, ...] = ("registration",)
            env: dict[str, str] = {}
            if s.vlm_model_dir:
                # The Triton model reads its VLM settings from PRIORWATCH_VLM_* in its environment.
                env = vlm_env(s.vlm_model_dir, dtype=s.vlm_dtype, device=s.vlm_device,
                              max_new_tokens=s.vlm_max_new_tokens, family=s.vlm_family,
                              trust_remote_code=s.vlm_trust_remote_code)
                models = ("registration", "vlm")
            self.triton = LocalTriton(
                models=models,
                env=env,
                startup_timeout_s=s.triton_startup_timeout_s,
                grpc_port=s.triton_grpc_port,
                http_port=s.triton_http_port,
                metrics_port=s.triton_metrics_port,
                log_path=self.log_dir / "triton.log",
            )
            self.triton.start()
            s = self.settings = s.model_copy(update={"triton_url": self.triton.grpc_url})
        if self.want_workers:
            self.worker = self._spawn_worker()
        if self.want_node:
            self.node = StorageNode(s)
            self.node.start()
        if self.want_services:
            for ep in entry_points(group="priorwatch.services"):
                svc = ep.load()(s)
                if svc is not None:
                    self.services.append(svc)
                    log.info("started service %s", ep.name)
        return self

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **as_env(self.settings)}
        with open(self.log_dir / "worker.log", "ab") as out:  # the child keeps its own handle
            return subprocess.Popen(worker_command(self.settings, beat=self.want_beat), env=env, stdout=out,
                                    stderr=subprocess.STDOUT)

    def stop(self) -> None:
        for svc in self.services:
            svc.stop()  # type: ignore[attr-defined]
        self.services = []
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.worker is not None:
            self.worker.send_signal(signal.SIGTERM)  # warm shutdown: finish the running job
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None
        if self.triton is not None:
            self.triton.stop()
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
            if self.worker is not None and self.worker.poll() is not None:
                log.error("worker exited with %s; restarting it", self.worker.returncode)
                self.worker = self._spawn_worker()
            time.sleep(0.5)
