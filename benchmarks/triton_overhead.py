"""Per-request overhead of the Triton path against the same model code called in-process.

For each model of the project's repository (``registration`` when present, and ``vlm`` on the
tiny random LLaVA), at concurrency 1 and 8, with dynamic batching on and off:

- in-process: the repository's own ``model.py`` (``TritonPythonModel``) loaded in this process
  with a stand-in for the Python backend's C types, called with one request per call;
- Triton: the local ``tritonserver`` serving a copy of the repository, called over gRPC.

Printed as ratios (Triton / in-process) of mean per-request latency and of throughput,
measured in the same run on the same inputs (a real chest CR pair from pydicom-data).

    .venv/bin/python benchmarks/triton_overhead.py [--requests 16] [--max-new-tokens 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparison.vlm import TritonProcess, build_tiny_llava, vlm_env  # noqa: E402
from comparison.vlm.serving import MODEL_REPOSITORY, pytriton_root, server_env  # noqa: E402

# --- the Python backend's C types, for calling model.py in-process ------------------------


def _pb_utils() -> types.ModuleType:
    path = pytriton_root() / "tritonserver" / "backends" / "python" / "triton_python_backend_utils.py"
    spec = importlib.util.spec_from_file_location("triton_python_backend_utils", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self._name, self._array = name, np.asarray(array)

        def name(self) -> str:
            return self._name

        def as_numpy(self) -> np.ndarray:
            return self._array

        def is_cpu(self) -> bool:
            return True

    class TritonError(Exception):
        UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

        def __init__(self, message: str, code: int = 1) -> None:
            super().__init__(message)
            self._message, self._code = message, code

        def message(self) -> str:
            return self._message

        def code(self) -> int:
            return self._code

    class InferenceRequest:
        def __init__(self, inputs: list[Tensor]) -> None:
            self._inputs = inputs

        def inputs(self) -> list[Tensor]:
            return self._inputs

        def requested_output_names(self) -> list[str]:
            return []

        def parameters(self) -> str:
            return "{}"

    class InferenceResponse:
        def __init__(self, output_tensors: list[Tensor] | None = None, error: Any = None) -> None:
            self._out, self._error = output_tensors or [], error

        def output_tensors(self) -> list[Tensor]:
            return self._out

        def has_error(self) -> bool:
            return self._error is not None

        def error(self) -> Any:
            return self._error

    class Logger:
        @staticmethod
        def log_info(msg: str) -> None: ...
        log_warn = log_error = log_verbose = log_info

    mod.Tensor, mod.TritonError, mod.TritonModelException = Tensor, TritonError, TritonError  # type: ignore[attr-defined]
    mod.InferenceRequest, mod.InferenceResponse, mod.Logger = InferenceRequest, InferenceResponse, Logger  # type: ignore[attr-defined]
    return mod


def load_in_process(repo: Path, name: str, config: dict[str, Any]) -> Any:
    """The repository's model.py for `name`, initialised in this process with the server's config."""
    pb = sys.modules.setdefault("triton_python_backend_utils", _pb_utils())
    del pb
    spec = importlib.util.spec_from_file_location(f"_bench_model_{name}", repo / name / "1" / "model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.TritonPythonModel()
    model.initialize({
        "model_config": json.dumps(config), "model_instance_kind": "CPU", "model_instance_name": f"{name}_0",
        "model_instance_device_id": "0", "model_repository": str(repo / name), "model_version": "1",
        "model_name": name,
    })
    return model


# --- inputs from the model's config -------------------------------------------------------

_NP = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT32": np.int32,
       "TYPE_INT64": np.int64, "TYPE_FP64": np.float64, "TYPE_STRING": np.object_, "TYPE_BOOL": np.bool_}
_TRITON = {"TYPE_UINT8": "UINT8", "TYPE_FP32": "FP32", "TYPE_FP16": "FP16", "TYPE_INT32": "INT32",
           "TYPE_INT64": "INT64", "TYPE_FP64": "FP64", "TYPE_STRING": "BYTES", "TYPE_BOOL": "BOOL"}


def make_inputs(config: dict[str, Any], cur: np.ndarray, prior: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
    """One request's inputs (batch 1): images for 2-D inputs, a day count / empty text otherwise."""
    batched = int(config.get("max_batch_size", 0)) > 0
    out: dict[str, tuple[np.ndarray, str]] = {}
    for inp in config["input"]:
        name, dt, dims = inp["name"], inp["data_type"], [int(d) for d in inp["dims"]]
        is_image = len(dims) == 2
        if inp.get("optional") and not (is_image and "LATERAL" not in name):
            continue
        if is_image:
            img = prior if "PRIOR" in name.upper() else cur
            arr = (img * 255).round().astype(np.uint8) if dt == "TYPE_UINT8" else img.astype(_NP[dt])
        elif dt == "TYPE_STRING":
            fill = b"{}" if "JSON" in name.upper() else b""
            arr = np.array([fill] * max(1, int(np.prod([d if d > 0 else 1 for d in dims]))), dtype=np.object_)
            arr = arr.reshape([d if d > 0 else 1 for d in dims])
        else:
            arr = np.full([d if d > 0 else 1 for d in dims], 30, dtype=_NP[dt])
        out[name] = (arr[None] if batched else arr, _TRITON[dt])
    return out


# --- timing --------------------------------------------------------------------------------


def run_concurrent(fn: Any, concurrency: int, per_worker: int) -> tuple[float, float]:
    """(mean per-request latency s, throughput req/s) of `fn` called by `concurrency` threads."""
    lat: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            local = []
            for _ in range(per_worker):
                t0 = time.perf_counter()
                fn()
                local.append(time.perf_counter() - t0)
            with lock:
                lat.extend(local)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return float(np.mean(lat)), len(lat) / wall


def in_process_fn(model: Any, inputs: dict[str, tuple[np.ndarray, str]]) -> Any:
    pb = sys.modules["triton_python_backend_utils"]

    def call() -> None:
        req = pb.InferenceRequest([pb.Tensor(n, a) for n, (a, _) in inputs.items()])
        (resp,) = model.execute([req])
        if resp.has_error():
            raise RuntimeError(resp.error().message())

    return call


def triton_fn(url: str, name: str, inputs: dict[str, tuple[np.ndarray, str]]) -> Any:
    import tritonclient.grpc as grpcclient

    local = threading.local()

    def call() -> None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = grpcclient.InferenceServerClient(url)
        ins = []
        for n, (a, dt) in inputs.items():
            t = grpcclient.InferInput(n, list(a.shape), dt)
            t.set_data_from_numpy(a)
            ins.append(t)
        c.infer(name, ins, client_timeout=300)

    return call


# --- main ------------------------------------------------------------------------------------


def repository_copy(dest: Path, models: list[str], batching: bool) -> Path:
    for m in models:
        shutil.copytree(MODEL_REPOSITORY / m, dest / m, ignore=shutil.ignore_patterns("__pycache__"))
        cfg = dest / m / "config.pbtxt"
        text = re.sub(r"dynamic_batching\s*\{[^}]*\}", "", cfg.read_text())
        if batching and re.search(r"max_batch_size:\s*[1-9]", text):
            text += "\ndynamic_batching { max_queue_delay_microseconds: 20000 }\n"
        cfg.write_text(text)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=16, help="requests per concurrency level (default 16)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per level; medians kept")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="long side of the images sent (default 256)")
    args = ap.parse_args()

    from pydicom.data import get_testdata_file

    from comparison import load_image

    cur = load_image(get_testdata_file("RG1_UNCR.dcm"), size=args.size).pixels
    prior = load_image(get_testdata_file("RG1_J2KI.dcm"), size=args.size).pixels
    models = [m for m in ("registration", "vlm") if (MODEL_REPOSITORY / m / "config.pbtxt").is_file()]
    work = Path(tempfile.mkdtemp(prefix="priorwatch-bench-"))
    env = vlm_env(build_tiny_llava(work / "tiny-llava"), max_new_tokens=args.max_new_tokens)
    import os

    for k, v in server_env(env).items():  # the in-process model sees what the server sees
        if k.startswith("PRIORWATCH_") or k.endswith("_OFFLINE"):
            os.environ[k] = v

    rows: list[tuple[str, str, int, float, float, float, float]] = []
    in_proc: dict[str, Any] = {}
    try:
        for batching in (True, False):
            repo = repository_copy(work / f"repo-{'dyn' if batching else 'nodyn'}", models, batching)
            with TritonProcess(repo, models, env=env, log_path=work / f"triton-{batching}.log") as server:
                import tritonclient.grpc as grpcclient

                c = grpcclient.InferenceServerClient(server.grpc_url)
                configs = {m: c.get_model_config(m, as_json=True)["config"] for m in models}
                c.close()
                for m in models:
                    if m not in in_proc:
                        in_proc[m] = load_in_process(repo, m, configs[m])
                    inputs = make_inputs(configs[m], cur, prior)
                    local, remote = in_process_fn(in_proc[m], inputs), triton_fn(server.grpc_url, m, inputs)
                    local(), remote()  # warm up both paths
                    for conc in (1, 8):
                        per = max(1, args.requests // conc)
                        # Alternate the two paths over rounds and keep medians: other load on the
                        # machine then hits both alike.
                        ls, ts = [], []
                        for _ in range(args.rounds):
                            ls.append(run_concurrent(local, conc, per))
                            ts.append(run_concurrent(remote, conc, per))
                        l_lat, l_tput = (float(np.median([x[i] for x in ls])) for i in (0, 1))
                        t_lat, t_tput = (float(np.median([x[i] for x in ts])) for i in (0, 1))
                        can_batch = int(configs[m].get("max_batch_size", 0)) > 0
                        rows.append((m, ("on" if batching else "off") if can_batch else "n/a", conc, t_lat / l_lat, t_tput / l_tput,
                                     l_lat * 1e3, t_lat * 1e3))
    finally:
        for m in in_proc.values():
            getattr(m, "finalize", lambda: None)()
        shutil.rmtree(work, ignore_errors=True)

    print(f"Triton (gRPC, local, CPU) vs the same model.py in-process; {args.requests} requests x {args.rounds} rounds per level; "
          f"images {args.size}px; tiny VLM max_new_tokens={args.max_new_tokens}")
    print(f"{'model':<13}{'dyn.batch':>10}{'conc':>6}{'latency ratio':>15}{'throughput ratio':>18}"
          f"{'in-proc ms':>12}{'triton ms':>11}")
    for m, b, conc, lr, tr, lms, tms in rows:
        print(f"{m:<13}{b:>10}{conc:>6}{lr:>14.2f}x{tr:>17.2f}x{lms:>12.1f}{tms:>11.1f}")
    if "registration" not in models:
        print("(no registration model in the repository: only the VLM was measured)")


if __name__ == "__main__":
    main()
