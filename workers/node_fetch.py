"""A worker's copies of a job's instances when it does not share the node's disk.

`worker_fetch = "shared"` (the embedded default): the paths in the index are read as they are.
`worker_fetch = "node"`: each instance the job reads is fetched from the node's HTTP store
(`dicom_node.serve_store`, Bearer `node_token`) into a folder of this worker's data dir, and
that folder is deleted when the job ends, whatever happened. A file the worker holds itself is
read in place. A prior a worker retrieves from the PACS is filed in the node's store
(`prior_sink`), never kept on the worker, so the other workers can fetch it too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pydicom

from dicom_node import statuses
from dicom_node.serve_store import SOURCE_AE_HEADER
from priorwatch.models import StudyRole
from priorwatch.settings import Settings
from workers.errors import PermanentError, TransientError
from workers.metrics import NODE_FETCH_BYTES

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read of a fetched instance


def cache_root(settings: Settings) -> Path:
    return settings.data_dir / "cache"


class InstanceNotHeld(PermanentError):
    """The node's store does not hold the instance (HTTP 404): it is gone, retrying will not help."""


class InstanceFiles:
    """Local paths for a job's instances; use as a context manager (cleans up on exit)."""

    def __init__(self, settings: Settings, job_id: int | str) -> None:
        """`job_id` names this worker's temporary folder (a job's id, or a delivery's kind)."""
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
                raise InstanceNotHeld(f"node store does not hold instance {instance_id}") from None
            raise TransientError(f"node store answered HTTP {exc.code} for instance {instance_id}") from None
        except (urllib.error.URLError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise TransientError(f"node store unreachable: {type(exc).__name__}") from None
        tmp.rename(dest)
        self.fetched_bytes += n
        NODE_FETCH_BYTES.inc(n)
        self.fetch_s += time.perf_counter() - t0


def prior_sink(settings: Settings, source_ae: str) -> Callable[[bytes], int]:
    """Where a prior this worker retrieves from the PACS (C-GET, WADO-RS) is filed: the node's
    own ingest when this worker shares its disk, else the node's HTTP store (`POST /instances`),
    so the prior is in the node's spool and index and every other worker fetches it from there."""
    if settings.worker_fetch != "node":
        from dicom_node import Ingest

        return Ingest(settings, create_schema=False).sink(role=StudyRole.prior.value, calling_ae=source_ae)
    if not (settings.node_url and settings.node_token):
        raise PermanentError("worker_fetch=node needs node_url and node_token")
    url = f"{str(settings.node_url).rstrip('/')}/instances"
    headers = {"Authorization": f"Bearer {settings.node_token}", "Content-Type": "application/dicom",
               SOURCE_AE_HEADER: source_ae}

    def _sink(raw: bytes) -> int:
        req = urllib.request.Request(url, data=raw, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=settings.node_fetch_timeout_s) as r:
                return int(json.loads(r.read())["status"])
        except urllib.error.HTTPError as exc:
            if exc.code == 409:  # the node refused the instance: its C-STORE status says why
                return int(json.loads(exc.read())["status"])
            log.warning("node store answered HTTP %s to a prior this worker retrieved", exc.code)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            log.warning("could not file a retrieved prior in the node's store: %s", type(exc).__name__)
        return statuses.OUT_OF_RESOURCES  # not stored: the retrieval counts it missing and is retried

    return _sink


def read_header(settings: Settings, instance_id: int | None, recorded: str, label: str,
                tags: list[str] | None = None) -> pydicom.Dataset:
    """One instance's header, from the spool or over the node's store (`worker_fetch=node`)."""
    with InstanceFiles(settings, label) as files:
        return pydicom.dcmread(files.path(instance_id, recorded), stop_before_pixels=True, specific_tags=tags)
