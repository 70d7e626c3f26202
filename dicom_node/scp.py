"""The Storage SCP: C-ECHO and C-STORE for every storage SOP class, any transfer syntax as sent.

The hot path never decodes pixel data: the data set as received (the C-STORE request's
buffer) is parsed for the header only, written durably to the spool behind its Part-10
prefix, indexed, and only then answered.
"""

from __future__ import annotations

import ctypes
import io
import logging
import socket
import subprocess
import threading
import weakref
from collections import Counter

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pynetdicom import (AE, ALL_TRANSFER_SYNTAXES, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION,
                        AllStoragePresentationContexts, evt)
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from priorwatch.log import phi_safe
from priorwatch.models import StudyRole
from priorwatch.settings import Settings

from dicom_node import assoc_slots, lean, netfast, receivers, recovery, spool
from dicom_node.completion import CompletionMonitor
from dicom_node.guard import Guard, Identity, Limits
from dicom_node.tls import server_context
from dicom_node.index import mark_released
from dicom_node.ingest import Ingest, StoreResult

log = logging.getLogger(__name__)

# glibc malloc: buffers up to this come from the heap, not from a fresh mmap each (at most 32 MiB
# on 64-bit; above our 16 MiB maximum PDU), and up to TRIM of free heap is kept for reuse. A 7.2 MB
# P-DATA PDU is read into a new buffer and copied into the data set: with glibc's defaults each
# came from freshly mapped pages (page faults, zeroing), the node's CPU per large instance was
# 26.5-30 ms against 11.5-14.5 ms with these (raw sender, 16 MiB PDUs, alternated; issue 32).
MALLOC_MMAP_THRESHOLD = 32 << 20
MALLOC_TRIM_THRESHOLD = 128 << 20


def keep_large_buffers() -> bool:
    """Set MALLOC_MMAP_THRESHOLD / MALLOC_TRIM_THRESHOLD for this process; False where the C
    library is not glibc or refuses them (nothing changes then)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
            libc.mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


class StorageNode:
    """A Storage SCP on `settings.dicom_host:settings.dicom_port` (port 0: any free port).

    `start()` returns once the node listens; `stop()` closes it and its completion monitor.
    """

    def __init__(self, settings: Settings, *, monitor: bool = True, max_associations: int | None = None,
                 listener: socket.socket | None = None, slot: tuple[int, int] | None = None) -> None:
        self.settings = settings
        # A receiver process (`listener` given) shares the node's socket and schema. Index
        # commits are not fsynced: the spool file is, and the node's start (`recovery`) indexes
        # it again if a power loss rolled its row back (dicom_node.ingest says what is durable).
        self.ingest = Ingest(settings, create_schema=listener is None, sync_index=False)
        if listener is None:  # the node, once: no mkdir on the receive path after this
            spool.prepare(settings.spool_dir)
        self._listener = listener
        self._slot = slot  # (this receiver's LoadBoard slot, slots)
        self._receivers: list[subprocess.Popen[bytes]] = []
        self.monitor: CompletionMonitor | None = CompletionMonitor(settings) if monitor else None
        self.guard = Guard(Limits(
            max_associations=max_associations or settings.dicom_max_associations,
            max_per_peer=settings.dicom_max_associations_per_peer,
            pdu_timeout_s=settings.dicom_pdu_timeout_s,
            artim_timeout_s=settings.dicom_artim_timeout_s,
        ), Identity(
            called_ae=settings.ae_title,  # a request calling any other AE title is refused
            client_aes={cn: frozenset(t.strip() for t in aes) for cn, aes in settings.dicom_tls_client_aes.items()},
        ))
        self._ssl_context = server_context(settings)  # a bad TLS setting stops the start, loudly
        self._server = None  # type: ignore[var-annotated]
        self._stopped_clean = False
        # Studies each live association stored into; held weakly so an association that ends
        # without release (abort, dropped connection) leaves nothing behind. Only the
        # association's own thread reads it: the connection-closed event may come from the DUL
        # thread before EVT_RELEASED (the peer closes as soon as it has our release reply).
        self._touched: weakref.WeakKeyDictionary[Association, set[int]] = weakref.WeakKeyDictionary()
        self._touched_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            return self.settings.dicom_port
        return int(self._server.server_address[1])

    @property
    def counts(self) -> Counter[str]:
        return self.ingest.counts

    def start(self) -> "StorageNode":
        if self._server is not None:
            return self
        if self._listener is None:  # the node's process, before anything is accepted
            recovery.on_start(self.ingest, self.settings)
            self._stopped_clean = False
        # pydicom checks every value it reads or writes against its VR's regular expression and
        # logs the ones that fail, quoting them: ~40 UIDs per instance in DIMSE messages and
        # negotiation, and a patient's name quoted in a log line. The node reads only the few
        # elements it indexes, with its own checks (dicom_node.headers): no warnings, no PHI.
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
        pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
        netfast.skip_unlogged_handlers()
        keep_large_buffers()
        ae = AE(ae_title=self.settings.ae_title)
        # Large P-DATA means fewer, larger reads; a claim above this is aborted unread.
        ae.maximum_pdu_size = self.settings.dicom_max_pdu_bytes
        self.guard.attach(ae)  # association limits, ARTIM, PDU read deadline
        ae.require_calling_aet = list(self.settings.allowed_calling_aes)
        ae.require_called_aet = False  # the guard checks it first, and logs why (Identity.called_ae)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_OPEN, self._on_conn_open),
        ]
        n = self.settings.receive_processes or receivers.auto_count()
        if self.settings.node_accept == "lean" and self._ssl_context is None:
            self._start_lean(n)
            return self
        listener = self._listener
        if listener is None and n > 1:
            listener = receivers.listen(self.settings.dicom_host, self.settings.dicom_port)
        if listener is None:
            self._server = ae.start_server(
                (self.settings.dicom_host, self.settings.dicom_port), block=False, evt_handlers=handlers,
                ssl_context=self._ssl_context,
            )
        else:
            if self._listener is None:
                # The node: its other receivers first, so that whoever sees the port answer
                # (a readiness probe, a sender) finds every receiver up.
                self._receivers = receivers.spawn(self.settings, listener, n - 1)
            slot, slots = self._slot or (0, n)
            board = receivers.LoadBoard(receivers.board_path(self.settings), slot, slots)
            server = receivers.SharedListenerServer(listener, ae, listener.getsockname(), ae.ae_title,
                                                    ae.supported_contexts, self._ssl_context, evt_handlers=handlers,
                                                    board=board)
            threading.Thread(target=server.serve_forever, name="priorwatch-acceptor", daemon=True).start()
            ae._servers.append(server)  # pynetdicom's server.shutdown() removes it from there
            self._server = server
        if self.monitor is not None:
            self.monitor.start()
        log.info("storage node %s listening on %s:%d", self.settings.ae_title, self.settings.dicom_host, self.port)
        return self

    def _start_lean(self, n: int) -> None:
        """The node's own upper layer (dicom_node.lean) on the node's port or shared listener."""
        listener = self._listener
        board = slots = None
        if listener is None:
            listener = receivers.listen(self.settings.dicom_host, self.settings.dicom_port)
        if self._listener is not None or n > 1:
            if self._listener is None:
                self._receivers = receivers.spawn(self.settings, listener, n - 1)
            slot, n_slots = self._slot or (0, n)
            board = receivers.LoadBoard(receivers.board_path(self.settings), slot, n_slots)
            slots = assoc_slots.NodeSlots(board.path.parent / assoc_slots.FOLDER, self.guard.limits.max_associations)
        config = lean.Config(
            ae_title=self.settings.ae_title,
            abstract_syntaxes=frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts) | {str(Verification)},
            transfer_syntaxes=tuple(str(ts) for ts in ALL_TRANSFER_SYNTAXES),
            max_pdu=self.settings.dicom_max_pdu_bytes,
            idle_timeout_s=self.settings.dicom_idle_timeout_s,
            allowed_calling_aes=frozenset(t.strip() for t in self.settings.allowed_calling_aes),
            implementation_class_uid=PYNETDICOM_IMPLEMENTATION_UID,
            implementation_version_name=PYNETDICOM_IMPLEMENTATION_VERSION,
            store=self._store_lean,
            on_released=self._mark_released,
        )
        self._server = lean.LeanServer(listener, config, self.guard, board=board, slots=slots).start()
        if self.monitor is not None:
            self.monitor.start()
        log.info("storage node %s listening on %s:%d (lean accept path)", self.settings.ae_title,
                 self.settings.dicom_host, self.port)

    def _store_lean(self, dataset: io.BytesIO, transfer_syntax: str, sop_class_uid: str, sop_instance_uid: str,
                    calling: str, originator: str, implementation_class_uid: str,
                    implementation_version_name: str) -> lean.StoreOutcome:
        result = self._store(dataset, transfer_syntax=transfer_syntax, sop_class_uid=sop_class_uid,
                             sop_instance_uid=sop_instance_uid, calling=calling, originator=originator,
                             implementation_class_uid=implementation_class_uid,
                             implementation_version_name=implementation_version_name)
        return lean.StoreOutcome(result.status, result.comment if result.status else None, result.study_id)

    def _store(self, dataset: io.BytesIO, *, transfer_syntax: str, sop_class_uid: str, sop_instance_uid: str,
               calling: str, originator: str, implementation_class_uid: str,
               implementation_version_name: str) -> StoreResult:
        """One received C-STORE data set, as either accept path hands it over."""
        # A C-STORE sub-operation of a C-MOVE we asked for names us as its Move Originator:
        # file it as a prior whatever the calling AE (a PACS also forwards new studies to us).
        role = StudyRole.prior.value if originator and originator == self.settings.ae_title.strip() else None
        return self.ingest.store_dataset(
            dataset, transfer_syntax=transfer_syntax, sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid,
            calling_ae=calling, role=role, implementation_class_uid=implementation_class_uid,
            implementation_version_name=implementation_version_name)

    def _mark_released(self, ids: set[int]) -> None:
        mark_released(self.ingest.engine, ids)

    def stop(self) -> None:
        receivers.stop(self._receivers)
        self._receivers = []
        if self._server is not None:
            # An association still open would keep the process alive until its peer let go:
            # abort it (what it stored is durable and indexed; the rest is the sender's to re-send).
            for assoc in self._server.active_associations:
                assoc.abort()
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.monitor is not None:
            self.monitor.stop()
        if self._listener is None and not self._stopped_clean:
            self._stopped_clean = True
            try:
                recovery.on_stop(self.ingest.engine, self.settings)
            except OSError as exc:  # the next start scans the spool: slower, nothing lost
                log.warning("cannot record a clean stop: %s", type(exc).__name__)

    def __enter__(self) -> "StorageNode":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers ----------------------------------------------------------------------------
    def _on_store(self, event: evt.Event) -> Dataset:
        request = event.request
        requestor = event.assoc.requestor
        calling = (requestor.ae_title or "").strip()
        expected = str(request.AffectedSOPInstanceUID or "")
        dataset = request.DataSet
        if not isinstance(dataset, io.BytesIO):
            log.warning("cannot read the received data set (sop %s)", phi_safe(expected))
            return _status(0xC210, "cannot understand: the data set could not be read")
        originator = str(getattr(request, "MoveOriginatorApplicationEntityTitle", None) or "").strip()
        result = self._store(
            dataset, transfer_syntax=str(event.context.transfer_syntax),
            sop_class_uid=str(request.AffectedSOPClassUID or ""), sop_instance_uid=expected,
            calling=calling, originator=originator,
            implementation_class_uid=str(requestor.implementation_class_uid or ""),
            implementation_version_name=str(requestor.implementation_version_name or ""))
        if result.study_id is not None:
            with self._touched_lock:
                self._touched.setdefault(event.assoc, set()).add(result.study_id)
        return _status(result.status, result.comment if result.status else None)

    def _on_released(self, event: evt.Event) -> None:
        with self._touched_lock:
            ids = self._touched.pop(event.assoc, set())
        if ids:
            try:
                mark_released(self.ingest.engine, ids)
            except Exception as exc:  # the quiet period still closes these studies
                log.warning("cannot record release of %d studies: %s", len(ids), type(exc).__name__)

    def _on_conn_open(self, event: evt.Event) -> None:
        self.guard.on_open(event.assoc)
        if isinstance(self._server, receivers.SharedListenerServer):
            self._server.track(event.assoc)

    def _on_aborted(self, event: evt.Event) -> None:
        # Aborted: no release, the quiet period decides.
        with self._touched_lock:
            self._touched.pop(event.assoc, None)


def _status(code: int, comment: str | None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]  # LO
    return ds
