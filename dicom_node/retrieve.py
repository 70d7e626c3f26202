"""Prior retrieval by C-GET, C-MOVE or WADO-RS, one small class each behind a registry.

Retrieved instances go to a `Sink` (the node's ingest, filing them as priors); what arrives
because we asked for it never starts a pipeline job.
"""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import ClassVar, Protocol

from pydantic import BaseModel
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedSRStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_node.pacs import PacsConfig, PacsError, PacsUnavailable, RetrieveMethod, open_association

# A sink takes a whole Part-10 file's bytes and says how it went (a C-STORE status code).
Sink = Callable[[bytes], int]

GET_STORAGE_CLASSES = [
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    CTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    ComprehensiveSRStorage,
    EnhancedSRStorage,
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR: prior reports
]


class RetrieveReport(BaseModel):
    method: RetrieveMethod
    completed: int = 0
    failed: int = 0
    warning: int = 0
    stored: int = 0  # instances our sink accepted
    final_status: int = 0
    partial: bool = False

    @property
    def reason(self) -> str:
        return (f"{self.method}: {self.completed} completed, {self.failed} failed, {self.warning} warnings"
                f" (status 0x{self.final_status:04X})")


class Retriever(Protocol):
    method: ClassVar[RetrieveMethod]

    def retrieve(self, pacs: PacsConfig, study_uid: str, sink: Sink, calling_ae: str) -> RetrieveReport: ...


def _study_query(study_uid: str) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study_uid
    return q


def _interpret(report: RetrieveReport, pacs: PacsConfig, rsp: Dataset, destination: str | None = None) -> None:
    code = int(rsp.Status)
    report.final_status = code
    report.completed = int(rsp.get("NumberOfCompletedSuboperations", report.completed) or 0)
    report.failed = int(rsp.get("NumberOfFailedSuboperations", report.failed) or 0)
    report.warning = int(rsp.get("NumberOfWarningSuboperations", report.warning) or 0)
    dest = f" to {destination}" if destination else ""
    if code == 0xA801:
        raise PacsError(f"{pacs.ae_title} does not know the move destination{dest} (0xA801): add our AE to the PACS")
    if code in (0xA701, 0xA702):
        raise PacsUnavailable(f"{pacs.ae_title} is out of resources (0x{code:04X})")
    if code == 0xC000 and report.method == RetrieveMethod.c_move and report.completed == 0:
        raise PacsError(f"{pacs.ae_title} refused the C-MOVE{dest} (0xC000): destination unknown, not allowed or unreachable")
    if code == 0xB000 or report.failed or report.warning:
        report.partial = True
    elif code != 0x0000:
        raise PacsError(f"{pacs.ae_title}: retrieve failed with status 0x{code:04X}")


def _associate(ae: AE, pacs: PacsConfig, calling_ae: str, **kw: object):  # type: ignore[no-untyped-def]
    return open_association(ae, pacs, calling_ae, **kw)


class CGetRetriever:
    """C-GET: the PACS sends over our own association (SCP role selected for each class)."""

    method: ClassVar[RetrieveMethod] = RetrieveMethod.c_get

    def retrieve(self, pacs: PacsConfig, study_uid: str, sink: Sink, calling_ae: str) -> RetrieveReport:
        report = RetrieveReport(method=self.method)
        ae = AE(ae_title=calling_ae)
        ae.maximum_pdu_size = 0
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for uid in GET_STORAGE_CLASSES:
            ae.add_requested_context(uid)
            roles.append(build_role(uid, scp_role=True))

        def on_store(event: evt.Event) -> int:
            status = sink(event.encoded_dataset())
            if status == 0:
                report.stored += 1
            return status

        assoc = _associate(ae, pacs, calling_ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            for status, _ in assoc.send_c_get(_study_query(study_uid), StudyRootQueryRetrieveInformationModelGet):
                if not status:
                    raise PacsUnavailable(f"{pacs.ae_title}: C-GET timed out or was aborted (is our AE {calling_ae} known to the PACS?)")
                if int(status.Status) not in (0xFF00, 0xFF01):
                    _interpret(report, pacs, status)
        finally:
            if assoc.is_established:
                assoc.release()
        return report


class CMoveRetriever:
    """C-MOVE to our node's own AE: the PACS opens a new association to the node."""

    method: ClassVar[RetrieveMethod] = RetrieveMethod.c_move

    def __init__(self, destination_ae: str) -> None:
        self.destination_ae = destination_ae

    def retrieve(self, pacs: PacsConfig, study_uid: str, sink: Sink, calling_ae: str) -> RetrieveReport:
        report = RetrieveReport(method=self.method)
        ae = AE(ae_title=calling_ae)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = _associate(ae, pacs, calling_ae)
        try:
            for status, _ in assoc.send_c_move(
                _study_query(study_uid), self.destination_ae, StudyRootQueryRetrieveInformationModelMove
            ):
                if not status:
                    raise PacsUnavailable(f"{pacs.ae_title}: C-MOVE timed out or was aborted (is our AE {calling_ae} known to the PACS?)")
                if int(status.Status) not in (0xFF00, 0xFF01):
                    _interpret(report, pacs, status, self.destination_ae)
        finally:
            if assoc.is_established:
                assoc.release()
        report.stored = report.completed  # they arrived at the node's SCP, which filed them
        return report


def _multipart_parts(stream: io.BufferedIOBase, boundary: bytes) -> Iterator[bytes]:
    """Parts of a multipart/related body. Reads the body once; fine for study-sized bodies."""
    body = stream.read()
    delim = b"--" + boundary
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.partition(b"\r\n\r\n")
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        yield payload


class WadoRsRetriever:
    """WADO-RS: the study as multipart/related application/dicom over HTTP."""

    method: ClassVar[RetrieveMethod] = RetrieveMethod.wado_rs

    def retrieve(self, pacs: PacsConfig, study_uid: str, sink: Sink, calling_ae: str) -> RetrieveReport:
        if not pacs.dicomweb_url:
            raise PacsError(f"{pacs.ae_title}: WADO-RS selected but no dicomweb_url configured")
        report = RetrieveReport(method=self.method)
        req = urllib.request.Request(
            f"{pacs.dicomweb_url.rstrip('/')}/studies/{study_uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        try:
            with urllib.request.urlopen(req, timeout=pacs.timeout_s) as rsp:
                ctype = rsp.headers.get("Content-Type", "")
                m = re.search(r'boundary="?([^";]+)"?', ctype)
                if not m:
                    raise PacsError(f"{pacs.ae_title}: WADO-RS answered {ctype!r}, not multipart")
                for part in _multipart_parts(rsp, m.group(1).encode()):
                    report.completed += 1
                    if sink(part) == 0:
                        report.stored += 1
                    else:
                        report.failed += 1
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise PacsError(f"{pacs.ae_title}: study not found by WADO-RS (404)") from exc
            if exc.code >= 500 or exc.code == 429:
                raise PacsUnavailable(f"{pacs.ae_title}: WADO-RS HTTP {exc.code}") from exc
            raise PacsError(f"{pacs.ae_title}: WADO-RS HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise PacsUnavailable(f"{pacs.ae_title}: WADO-RS unreachable: {exc}") from exc
        report.partial = report.failed > 0
        return report


def retriever_for(pacs: PacsConfig, node_ae: str) -> Retriever:
    if pacs.retrieve == RetrieveMethod.c_get:
        return CGetRetriever()
    if pacs.retrieve == RetrieveMethod.c_move:
        return CMoveRetriever(node_ae)
    return WadoRsRetriever()
