"""A local `tritonserver` (the binary shipped in the nvidia-pytriton wheel) on loopback.

The embedded default: no container, no GPU. The Python backend needs its stub for the
running interpreter, `libtriton_python.so` and `triton_python_backend_utils.py` in one
backend folder (symlinked into a private temp dir), `PATH` starting with this venv's `bin`,
`LD_LIBRARY_PATH` at the interpreter's `sysconfig` LIBDIR (or the stub loads another
libpython), and `PYTHONPATH` so the stub imports `comparison` and this venv's packages.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["LocalTriton", "TritonStartError", "DEFAULT_MODEL_REPOSITORY", "remove_stale_folders", "tritonserver_paths"]

DEFAULT_MODEL_REPOSITORY = Path(__file__).resolve().parent / "model_repository"
_REPO_ROOT = Path(__file__).resolve().parent.parent
FOLDER_PREFIX = "priorwatch-triton-"  # each start's private folder in the temp dir (backend symlinks, log)
OWNER_FILE = "owner"  # in that folder: "<pid> <start time in clock ticks>" of the process that made it

log = logging.getLogger(__name__)


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; the message carries the tail of its log."""


def tritonserver_paths() -> dict[str, Path]:
    """Where the nvidia-pytriton wheel keeps the server, the Python backend and the stub."""
    import pytriton

    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {
        "root": root,
        "binary": root / "bin" / "tritonserver",
        "backend_lib": root / "backends" / "python" / "libtriton_python.so",
        "backend_utils": root / "backends" / "python" / "triton_python_backend_utils.py",
        "stub": root / "python_backend_stubs" / ver / "triton_python_backend_stub",
    }
    missing = [f"{k}: {p}" for k, p in paths.items() if not p.exists()]
    if missing:
        raise TritonStartError("nvidia-pytriton is incomplete: missing " + ", ".join(missing))
    return paths


class LocalTriton:
    """Start, wait for and stop a local tritonserver serving `model_repository`.

    Use as a context manager or call `start()` / `stop()`. `grpc_url` is what
    `TritonComparator` takes.
    """

    def __init__(
        self,
        model_repository: str | Path | None = None,
        grpc_port: int = 18001,
        http_port: int = 18000,
        metrics_port: int | None = 18002,
        log_path: str | Path | None = None,
        models: tuple[str, ...] = ("registration",),
        startup_timeout_s: float = 60.0,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = {k: str(v) for k, v in (env or {}).items()}  # e.g. the VLM's PRIORWATCH_VLM_*
        self.model_repository = Path(model_repository) if model_repository else DEFAULT_MODEL_REPOSITORY
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.models = tuple(models)
        self.startup_timeout_s = startup_timeout_s
        self.host = host
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._shm_before: set[str] = set()

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self, backend_dir: Path) -> list[str]:
        p = tritonserver_paths()
        cmd = [
            str(p["binary"]),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            "--disable-auto-complete-config",
            "--model-control-mode=explicit",
            *[f"--load-model={m}" for m in self.models],
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]
        if self.metrics_port is None:
            cmd.append("--allow-metrics=false")
        else:
            cmd += ["--allow-metrics=true", "--allow-gpu-metrics=false", f"--metrics-address={self.host}",
                    f"--metrics-port={self.metrics_port}"]
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        venv_bin = str(Path(sys.executable).parent)  # not resolved: the venv's bin, not the base's
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(x for x in (libdir, env.get("LD_LIBRARY_PATH", "")) if x)
        site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        parts = [str(_REPO_ROOT), *dict.fromkeys(site), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(x for x in parts if x)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("PRIORWATCH_SOURCE_DIR", str(_REPO_ROOT))
        env.update(self.env)
        return env

    def start(self) -> "LocalTriton":
        if self.is_running():
            return self
        remove_stale_folders()  # what a start killed with -9 left (its owner's cleanup never ran)
        if not (self.model_repository / self.models[0] / "config.pbtxt").is_file():
            raise TritonStartError(f"no model {self.models[0]!r} in {self.model_repository}")
        p = tritonserver_paths()
        self._tmp = tempfile.TemporaryDirectory(prefix=FOLDER_PREFIX)
        _write_owner(Path(self._tmp.name))
        backend_dir = Path(self._tmp.name) / "backends"
        py = backend_dir / "python"
        py.mkdir(parents=True)
        for name, key in (("libtriton_python.so", "backend_lib"), ("triton_python_backend_utils.py", "backend_utils"),
                          ("triton_python_backend_stub", "stub")):
            (py / name).symlink_to(p[key])
        if self.log_path is None:
            self.log_path = Path(self._tmp.name) / "tritonserver.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._shm_before = _shm_regions()
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(self.command(backend_dir), env=self.environment(), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        try:
            for m in self.models:
                with urllib.request.urlopen(f"{self.http_url}/v2/models/{m}/ready", timeout=1.0) as r:
                    if r.status != 200:
                        return False
            return True
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise TritonStartError(f"tritonserver exited with {self._proc.returncode} before it was ready:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.1)
        raise TritonStartError(f"tritonserver was not ready after {self.startup_timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self, timeout_s: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            crashed = False
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                crashed = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session: the server and its stubs
                except ProcessLookupError:
                    pass
                proc.wait()
            if crashed:
                self._clean_shm()
        elif proc is not None and proc.returncode not in (0, None):
            self._clean_shm()  # it died on its own: leave no shared-memory regions behind
        if self._tmp is not None:
            if self._own_log and self.log_path is not None and self.log_path.parent == Path(self._tmp.name):
                self.log_path = None
            self._tmp.cleanup()
            self._tmp = None

    def _clean_shm(self) -> None:
        for name in _shm_regions() - self._shm_before:
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _shm_regions() -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("triton_python_backend_shm_region_")}
    except OSError:
        return set()


def _started_at(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22); None when it is
    gone. With the pid it names one process: a pid reused later has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def _write_owner(folder: Path) -> None:
    (folder / OWNER_FILE).write_text(f"{os.getpid()} {_started_at(os.getpid())}\n")


def _owner_alive(folder: Path) -> bool | None:
    """True/False from the folder's owner record; None when it has none (made by an older
    version, or by a start that has not written it yet): such a folder is left alone."""
    try:
        pid_text, started = (folder / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return _started_at(pid) == started


def _named_by_a_live_process(folder: Path) -> bool:
    """Whether any process's command line names the folder (a tritonserver or backend stub whose
    owner died without stopping it, e.g. a plain LocalTriton's server in its own session)."""
    needle = str(folder).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def remove_stale_folders(tmp_root: Path | None = None) -> list[Path]:
    """Remove this user's `priorwatch-triton-*` folders whose owner process is gone and that no
    live process names; never one of a live process, nor one without an owner record."""
    root = Path(tmp_root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(FOLDER_PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _owner_alive(folder) is not False or _named_by_a_live_process(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d Triton folder(s) left by stopped processes", len(removed))
    return removed
