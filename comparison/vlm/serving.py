"""A thin local Triton launcher that loads a *named subset* of the model repository and passes
environment to the Python models (the VLM's model folder and settings).

It runs the ``tritonserver`` binary shipped in the ``nvidia-pytriton`` wheel exactly as
DESIGN.md says ("Real components and how they start"): one backend folder holding the Python
stub, ``libtriton_python.so`` and ``triton_python_backend_utils.py`` (symlinks), ``PATH``
starting with the venv's ``bin``, ``LD_LIBRARY_PATH`` = the interpreter's ``LIBDIR``,
loopback addresses and ``--disable-auto-complete-config``. Models are loaded explicitly by
name (``--model-control-mode=explicit``), so a repository whose ``vlm`` entry has no model
folder configured still serves ``registration``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

MODEL_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytriton_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent


def tritonserver_binary() -> Path:
    return pytriton_root() / "tritonserver" / "bin" / "tritonserver"


def make_backend_dir(dest: Path) -> Path:
    """A ``backends/python`` folder for this interpreter's Python version (symlinks)."""
    root = pytriton_root() / "tritonserver"
    py = dest / "python"
    py.mkdir(parents=True, exist_ok=True)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": root / "python_backend_stubs" / ver / "triton_python_backend_stub",
    }
    for name, target in links.items():
        if not target.exists():
            raise FileNotFoundError(f"nvidia-pytriton lacks {target}")
        link = py / name
        if not link.exists():
            link.symlink_to(target)
    return dest


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = [libdir, str(pytriton_root().parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("PRIORWATCH_SOURCE_DIR", str(MODEL_REPOSITORY.parents[1]))
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


class TritonProcess:
    """A local ``tritonserver`` serving `models` from `repository` on loopback.

    Parameters
    ----------
    repository
        The model repository (default: the project's ``comparison/model_repository``).
    models
        The model names to load (explicit model control).
    env
        Extra environment for the server and its Python models (e.g. ``PRIORWATCH_VLM_MODEL_DIR``).
    grpc_port, http_port
        0 picks free ports.
    log_path
        Where the server writes its log (default: a file in a temp folder).
    startup_timeout_s
        How long to wait for the server and every named model to be ready.
    """

    def __init__(
        self,
        repository: str | Path | None = None,
        models: Sequence[str] = ("registration", "vlm"),
        *,
        env: Mapping[str, str] | None = None,
        grpc_port: int = 0,
        http_port: int = 0,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 180.0,
    ) -> None:
        self.repository = Path(repository or MODEL_REPOSITORY).resolve()
        self.models = list(models)
        self.env = dict(env or {})
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self._tmp = Path(tempfile.mkdtemp(prefix="priorwatch-triton-"))
        self.log_path = Path(log_path) if log_path else self._tmp / "triton.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: object | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [
            str(tritonserver_binary()),
            f"--model-repository={self.repository}",
            f"--backend-directory={make_backend_dir(self._tmp / 'backends')}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--allow-metrics=false",
            "--log-verbose=0",
        ]
        cmd += [f"--load-model={m}" for m in self.models]
        return cmd

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self) -> "TritonProcess":
        import tritonclient.grpc as grpcclient

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self._log = log
        self.proc = subprocess.Popen(
            self.command(), env=server_env(self.env), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                        return self
                except Exception:
                    pass
                time.sleep(0.2)
            raise TimeoutError(f"tritonserver not ready in {self.startup_timeout_s}s:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()

    def stop(self, timeout_s: float = 20.0) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()  # SIGTERM: Triton unloads models and stops its Python stubs
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        if not str(self.log_path).startswith(str(self._tmp)):
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            shutil.rmtree(self._tmp / "backends", ignore_errors=True)

    def __enter__(self) -> "TritonProcess":
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def vlm_env(model_dir: str | Path, *, dtype: str = "auto", device: str = "cpu", max_new_tokens: int = 384,
            family: str = "auto", trust_remote_code: bool = False) -> dict[str, str]:
    """The environment that points the repository's ``vlm`` model at a local model folder."""
    return {
        "PRIORWATCH_VLM_MODEL_DIR": str(Path(model_dir).resolve()),
        "PRIORWATCH_VLM_DTYPE": dtype,
        "PRIORWATCH_VLM_DEVICE": device,
        "PRIORWATCH_VLM_MAX_NEW_TOKENS": str(int(max_new_tokens)),
        "PRIORWATCH_VLM_FAMILY": family,
        "PRIORWATCH_VLM_TRUST_REMOTE_CODE": "true" if trust_remote_code else "false",
    }
