"""Ingest one received instance: header → spool file (durable) → index → status.

The Storage SCP (C-STORE from scanners, archives, C-MOVE) hands over the data set in its
receive buffer (`store_dataset`); retrieval (C-GET, WADO-RS) and tools hand whole Part-10 byte
strings (`store`, `sink(role="prior")`). Both end in the same `_file`.

What is durable when Success is returned:
- always: the instance's spool file, data and directory entry (`spool.write_new`: written, then
  fdatasync'd), holding everything its index row is made of (Part-10 meta with the calling AE
  as Source AE, the header, and the prior role in its preamble);
- with `sync_index=True` (the default: retrieval, the HTTP store, tools): also the index row
  (a commit with SQLite `synchronous=FULL`, or PostgreSQL's synchronous commit);
- with `sync_index=False` (the Storage SCP, `dicom_node.scp`, SQLite only): the index row is
  committed, so every reader sees it and a crash of the process keeps it, but it reaches the
  disk with the next synced commit (the completion monitor's, which closes studies, or a
  checkpoint). A power loss before that may roll it back; the node's next start then indexes
  the file again from the spool (`dicom_node.recovery`), before it accepts any association.
  This is what saves one fsync per instance (on this machine's disk each costs ~4 ms, as much
  as the file's own fdatasync; Orthanc, for comparison, syncs the file and not its index).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

from priorwatch.db import get_engine, init_db
from priorwatch.log import phi_safe
from priorwatch.models import StudyRole
from priorwatch.settings import Settings

from dicom_node import part10, quarantine, statuses
from dicom_node.headers import Header, IngestError, read_header, read_header_dataset
from dicom_node.index import Duplicate, PatientMismatch, index_instance, is_indexed, unsynced_engine
from dicom_node.spool import Buffer, new_instance_path, write_new

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StoreResult:
    status: int
    comment: str = ""
    study_id: int | None = None
    duplicate: bool = False


class Ingest:
    """Thread-safe: many associations may call `store` at once.

    `sync_index=False`: index commits are not fsynced (see the module docstring for what is
    durable at Success); only for a node whose start runs `dicom_node.recovery`."""

    def __init__(self, settings: Settings, *, create_schema: bool = True, sync_index: bool = True) -> None:
        self.settings = settings
        if create_schema:
            init_db(settings)
        else:
            settings.ensure_dirs()
        self.durable_engine = get_engine(settings)  # quarantine rows and audits: always synced
        self.engine = self.durable_engine if sync_index else unsynced_engine(self.durable_engine)
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1

    def role_for(self, calling_ae: str) -> str:
        return StudyRole.prior.value if calling_ae.strip() in self.settings.prior_source_aes else StudyRole.incoming.value

    def store(self, raw: bytes, *, calling_ae: str = "", expected_sop_uid: str | None = None,
              role: str | None = None) -> StoreResult:
        """Store one Part-10 byte string. Never raises: every outcome is a C-STORE status."""
        return self._guarded(lambda: self._file(read_header(raw), (raw,), calling_ae, expected_sop_uid,
                                                role or self.role_for(calling_ae)),
                             calling_ae, expected_sop_uid)

    def store_dataset(self, dataset: io.BytesIO, *, transfer_syntax: str, sop_class_uid: str,
                      sop_instance_uid: str, calling_ae: str = "", role: str | None = None,
                      implementation_class_uid: str = "", implementation_version_name: str = "") -> StoreResult:
        """Store a data set as received in a C-STORE (no file meta), read in place from its
        receive buffer: its Part-10 prefix is encoded here and written before it, no copy."""

        def run() -> StoreResult:
            dataset.seek(0)
            header = read_header_dataset(dataset, transfer_syntax)
            filed_as = role or self.role_for(calling_ae)
            head = part10.prefix(
                prior=filed_as == StudyRole.prior.value, sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid, transfer_syntax=transfer_syntax,
                implementation_class_uid=implementation_class_uid or PYNETDICOM_IMPLEMENTATION_UID,
                implementation_version_name=implementation_version_name, source_ae=calling_ae)
            body = dataset.getbuffer()
            try:
                return self._file(header, (head, body), calling_ae, sop_instance_uid, filed_as)
            finally:
                body.release()

        return self._guarded(run, calling_ae, sop_instance_uid)

    def _guarded(self, run: Callable[[], StoreResult], calling_ae: str, expected_sop_uid: str | None) -> StoreResult:
        try:
            return run()
        except IngestError as exc:
            self._count("refused")
            log.warning("refused instance from %s: 0x%04X %s (sop %s)", calling_ae or "-", exc.status,
                        exc.comment, phi_safe(expected_sop_uid))
            return StoreResult(exc.status, exc.comment)
        except Exception as exc:  # never take the node down: refuse this one, keep serving
            self._count("errors")
            log.exception("internal error storing instance (sop %s): %s", phi_safe(expected_sop_uid), type(exc).__name__)
            return StoreResult(statuses.INDEX_UNAVAILABLE, f"internal error: {type(exc).__name__}")

    def sink(self, role: str = StudyRole.prior.value, calling_ae: str = ""):  # type: ignore[no-untyped-def]
        """A `dicom_node.retrieve.Sink`: bytes → status, filing what arrives under `role`."""

        def _sink(raw: bytes) -> int:
            return self.store(raw, calling_ae=calling_ae, role=role).status

        return _sink

    def _file(self, header: Header, parts: Sequence[Buffer], calling_ae: str, expected_sop_uid: str | None,
              role: str) -> StoreResult:
        """Spool (durable) → index → status, for an instance whose header is read."""
        sop = header.sop_instance_uid
        if expected_sop_uid is not None and expected_sop_uid.strip("\x00 ") != sop:
            raise IngestError(statuses.DATASET_MISMATCH)
        try:
            path = self._write(sop, parts)
        except OSError as exc:
            existing = is_indexed_safe(self, sop)
            if existing:  # a re-send of what we hold: no need for the space
                return self._duplicate(sop, existing)
            self._count("write_errors")
            log.error("cannot write instance %s to the spool: %s", phi_safe(sop), os.strerror(exc.errno or 0) or type(exc).__name__)
            return StoreResult(statuses.OUT_OF_RESOURCES, f"out of resources: {os.strerror(exc.errno or 0) or 'write failed'}")

        return self._index(header, path, sum(len(p) for p in parts), calling_ae, role)

    def _index(self, header: Header, path: Path, size: int, calling_ae: str, role: str) -> StoreResult:
        """Index a durable spool file; on any refusal the file is not left in the spool."""
        sop = header.sop_instance_uid
        try:
            indexed = index_instance(self.engine, header, path=str(path), size=size, calling_ae=calling_ae, role=role)
        except Duplicate as dup:
            if dup.path is None or Path(dup.path).name != path.name:
                _unlink(path)  # the indexed copy stays the stored one
            return self._duplicate(sop, dup.study_id)
        except PatientMismatch as mismatch:
            self._count("quarantined")
            try:
                quarantine.quarantine(self.durable_engine, self.settings, spool_path=path, size=size,
                                      sop_instance_uid=sop, study_uid=header.study_uid, calling_ae=calling_ae,
                                      role=role, mismatch=mismatch)
            except Exception as exc:  # still refused: never filed into another patient's study
                log.error("cannot quarantine instance %s: %s", phi_safe(sop), type(exc).__name__)
                _unlink(path)
            raise IngestError(statuses.PATIENT_MISMATCH, quarantine.comment(mismatch.differs)) from None
        except Exception as exc:
            self._count("index_errors")
            log.error("cannot index instance %s: %s", phi_safe(sop), type(exc).__name__)
            _unlink(path)  # never indexed under this fresh name
            return StoreResult(statuses.INDEX_UNAVAILABLE, f"out of resources: index unavailable ({type(exc).__name__})")
        self._count("stored")
        if indexed.new_version:
            log.info("study %s reopened as version %d by a late instance", indexed.study_id, indexed.study_version)
        return StoreResult(statuses.SUCCESS, "", indexed.study_id)

    def adopt(self, path: Path) -> StoreResult:
        """Index a spool file that has no index row (`dicom_node.recovery`): its header, calling
        AE (Source AE) and role (preamble mark, else `role_for`) are read from the file itself.
        A file that cannot be read stays where it is (never acknowledged: a crash mid-write)."""
        raw = path.read_bytes()
        try:
            header = read_header(raw)
        except IngestError as exc:
            return StoreResult(exc.status, exc.comment)
        source = _source_ae(path)
        role = StudyRole.prior.value if part10.marked_prior(raw) else self.role_for(source)
        return self._guarded(lambda: self._index(header, path, len(raw), source, role), source,
                             header.sop_instance_uid)

    def _write(self, sop: str, parts: Sequence[Buffer]) -> Path:
        for attempt in range(3):
            path = new_instance_path(self.settings.spool_dir, sop)
            try:
                write_new(path, parts, fsync=self.settings.fsync)
                return path
            except FileExistsError:  # the same random suffix for the same SOP: draw again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _duplicate(self, sop: str, study_id: int | None) -> StoreResult:
        self._count("duplicates")
        log.info("duplicate instance %s (study id %s): already stored", phi_safe(sop), study_id)
        return StoreResult(statuses.SUCCESS, "duplicate", study_id, duplicate=True)


def _source_ae(path: Path) -> str:
    """(0002,0016) Source Application Entity Title of a Part-10 file, or ""."""
    try:
        meta = read_file_meta_info(path)
    except Exception:
        return ""
    return str(meta.get("SourceApplicationEntityTitle", "") or "").strip()


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def is_indexed_safe(ingest: Ingest, sop: str) -> int | None:
    try:
        return is_indexed(ingest.engine, sop)
    except Exception:
        return None  # unknown: treat as not held
