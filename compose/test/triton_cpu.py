"""The test stack's Triton: the nvidia-pytriton wheel's tritonserver on CPU serving the project's
registration model, in the foreground until SIGTERM.

Started as compose starts Triton (issue 27): `--model-control-mode=none`, so the repository API
refuses to load or unload a model (in explicit mode any process that reached the HTTP port could
unload the model and stop every comparison); and on loopback only. Mode `none` loads every model
in its repository, so this one serves a repository holding only `registration` (a link to the
project's): the VLM needs weights and a GPU the test machine does not have.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from comparison import LocalTriton


class FixedModelsTriton(LocalTriton):
    """LocalTriton without model control: the models it starts with are the models it serves."""

    def command(self, backend_dir: Path) -> list[str]:
        cmd = super().command(backend_dir)
        return [a for a in cmd if not a.startswith(("--model-control-mode=", "--load-model="))] + [
            "--model-control-mode=none"]


def main() -> int:
    repo = Path(tempfile.mkdtemp(prefix="priorwatch-models-"))
    (repo / "registration").symlink_to(LocalTriton().model_repository / "registration", target_is_directory=True)
    triton = FixedModelsTriton(
        model_repository=repo,
        http_port=int(os.environ.get("PW_TRITON_HTTP_PORT", "18000")),
        grpc_port=int(os.environ.get("PW_TRITON_GRPC_PORT", "18001")),
        metrics_port=int(os.environ.get("PW_TRITON_METRICS_PORT", "18002")),
        host=os.environ.get("PW_TRITON_HOST", "127.0.0.1"),
        models=("registration",),
        startup_timeout_s=120.0,
        log_path="/tmp/tritonserver.log",
    )
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    with triton:
        print(f"tritonserver ready on {triton.grpc_url} (gRPC), {triton.http_url}, model control off", flush=True)
        while not stop["now"] and triton.is_running():
            time.sleep(0.5)
        dead = not triton.is_running()
        if dead:
            print(triton.log_tail(), file=sys.stderr, flush=True)
    return 1 if dead else 0


if __name__ == "__main__":
    raise SystemExit(main())
