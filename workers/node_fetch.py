"""A worker's copies of a job's instances when it does not share the node's disk.

`worker_fetch = "shared"` (the embedded default): the paths in the index are read as they are.
`worker_fetch = "node"`: each instance the job reads is fetched from the node's HTTP store
(`dicom_node.serve_store`, Bearer `node_token`) into a folder of this worker's data dir, and
that folder is deleted when the job ends, whatever happened. A file the worker holds itself
(a prior it retrieved from the PACS) is read in place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from priorwatch.settings import Settings
from workers.errors import PermanentError, TransientError
from workers.metrics import NODE_FETCH_BYTES

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read of a fetched instance


def cache_root(settings: Settings) -> Path:
    return settings.data_dir / "cache"


class InstanceFiles:
    """Local paths for a job's instances; use as a context manager (cleans up on exit)."""

    def __init__(self, settings: Settings, job_id: int) -> None:
        self.settings = settings
        self.job_id = job_id
        self.mode = settings.worker_fetch
        if self.mode not in ("shared", "node"):
            raise PermanentError(f"worker_fetch must be 'shared' or 'node', not {self.mode!r}")
        if self.mode == "node" and not (settings.node_url and settings.node_token):
            raise PermanentError("worker_fetch=node needs node_url and node_token")
        self._dir: Path | None = None
        self.fetched_bytes = 0
        self.fetch_s = 0.0

    def __enter__(self) -> "InstanceFiles":
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def path(self, instance_id: int | None, recorded: str) -> str:
        """A readable local path for the instance the index records at `recorded`."""
        if self.mode == "shared" or instance_id is None or os.path.isfile(recorded):
            return recorded
        if self._dir is None:
            root = cache_root(self.settings)
            root.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=f"job-{self.job_id}-", dir=root))
        dest = self._dir / f"{instance_id}.dcm"
        if not dest.exists():
            try:
                self._fetch(instance_id, dest)
            except BaseException:
                self.cleanup()
                raise
        return str(dest)

    def _fetch(self, instance_id: int, dest: Path) -> None:
        url = f"{str(self.settings.node_url).rstrip('/')}/instances/{instance_id}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.settings.node_token}"})
        t0 = time.perf_counter()
        tmp = dest.with_suffix(".part")
        try:
            with urllib.request.urlopen(req, timeout=self.settings.node_fetch_timeout_s) as r, open(tmp, "wb") as f:
                expected = int(r.headers.get("Content-Length") or -1)
                n = 0
                while chunk := r.read(CHUNK):
                    f.write(chunk)
                    n += len(chunk)
            if expected >= 0 and n != expected:
                raise TransientError(f"node store sent {n} of {expected} bytes of instance {instance_id}")
        except urllib.error.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            if exc.code in (401, 403):
                raise PermanentError("node store refused this worker's token (check node_token)") from None
            if exc.code == 404:
                raise PermanentError(f"node store does not hold instance {instance_id}") from None
            raise TransientError(f"node store answered HTTP {exc.code} for instance {instance_id}") from None
        except (urllib.error.URLError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise TransientError(f"node store unreachable: {type(exc).__name__}") from None
        tmp.rename(dest)
        self.fetched_bytes += n
        NODE_FETCH_BYTES.inc(n)
        self.fetch_s += time.perf_counter() - t0
