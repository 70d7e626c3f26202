"""The test stack's Triton: the nvidia-pytriton wheel's tritonserver on CPU serving the project's
model repository (the registration model), in the foreground until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time

from comparison import LocalTriton


def main() -> int:
    triton = LocalTriton(
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
        print(f"tritonserver ready on {triton.grpc_url} (gRPC), {triton.http_url}", flush=True)
        while not stop["now"] and triton.is_running():
            time.sleep(0.5)
        dead = not triton.is_running()
        if dead:
            print(triton.log_tail(), file=sys.stderr, flush=True)
    return 1 if dead else 0


if __name__ == "__main__":
    raise SystemExit(main())
