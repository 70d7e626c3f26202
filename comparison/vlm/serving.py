"""Serving the VLM locally: `comparison.LocalTriton` with the VLM's defaults, and the
environment (`vlm_env`) that points the repository's ``vlm`` model at a local model folder.
Models load explicitly by name, so a ``vlm`` entry without a model folder never stops
``registration`` from serving.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from comparison.triton_server import DEFAULT_MODEL_REPOSITORY, LocalTriton

MODEL_REPOSITORY = DEFAULT_MODEL_REPOSITORY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytriton_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the local Triton gives its Python models (for in-process comparisons)."""
    return LocalTriton(env=extra).environment()


class TritonProcess(LocalTriton):
    """`LocalTriton` with the VLM's defaults: both models, free ports, a long start-up (a real
    model folder on CPU loads slowly), and `env` for the VLM's settings."""

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
        super().__init__(repository or MODEL_REPOSITORY, grpc_port or free_port(), http_port or free_port(),
                         None, log_path, tuple(models), startup_timeout_s, env=env)


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
