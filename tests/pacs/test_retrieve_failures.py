"""Retrieval that goes wrong: refused associations, a PACS that never answers, partial C-GETs.

Small pynetdicom SCPs written here play the misbehaving PACS; Orthanc plays a real one that
does not know our AE.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    UltrasoundImageStorage,
)

from dicom_node.guard import Guard, Limits
from dicom_node.pacs import PacsConfig, PacsConfigError, PacsUnavailable
from dicom_node.retrieve import CGetRetriever
from tests.conftest import require_binary
from tests.pacs.conftest import NODE_AE, write_study
from tests.peers import Orthanc

SCP_AE = "FAKEPACS"


@contextmanager
def get_scp(handler: Callable[[evt.Event], Any], **ae_attrs: object) -> Iterator[PacsConfig]:
    """A C-GET SCP on a free loopback port, answering with `handler`; yields the PacsConfig to reach it."""
    ae = AE(ae_title=SCP_AE)
    for k, v in ae_attrs.items():
        setattr(ae, k, v)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    for cls in (CTImageStorage, UltrasoundImageStorage):
        ae.add_supported_context(cls, scu_role=True, scp_role=True)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_GET, handler)])
    try:
        yield PacsConfig(ae_title=SCP_AE, port=server.server_address[1], timeout_s=1)
    finally:
        server.shutdown()


def _ct(study_uid: str, sop_class: str = CTImageStorage) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SOPInstanceUID = study_uid, generate_uid()
    ds.SOPClassUID = sop_class
    return ds


def _never_called(event: evt.Event) -> Iterator[Any]:
    raise AssertionError("no C-GET should reach the SCP")
    yield  # pragma: no cover


# -- refused associations -----------------------------------------------------------------------

@pytest.mark.parametrize("attrs, called, reason", [
    ({"require_calling_aet": ["ONLY_THE_RIS"]}, SCP_AE, "Calling AE title not recognised"),  # our AE unknown there
    ({"require_called_aet": True}, "WRONG_AE", "Called AE title not recognised"),  # a wrong PACS AE title
], ids=["unknown-calling-ae", "wrong-called-ae"])
def test_permanent_rejection_is_a_configuration_error_with_the_pacs_reason(attrs: dict[str, object], called: str,
                                                                           reason: str) -> None:
    with get_scp(_never_called, **attrs) as pacs:
        pacs = pacs.model_copy(update={"ae_title": called})
        t0 = time.monotonic()
        with pytest.raises(PacsConfigError, match=f"{called} rejected our association .*Rejected Permanent.*{reason}"):
            CGetRetriever().retrieve(pacs, "1.2.3.4", lambda b: 0, NODE_AE)
        assert time.monotonic() - t0 < 1.0  # a rejection is an answer, not a timeout


def test_transient_rejection_is_unavailable_with_the_pacs_reason() -> None:
    full = Guard(Limits(max_associations=0))  # a PACS at its association limit: "local limit exceeded"
    with get_scp(_never_called, _pw_guard=full) as pacs:
        with pytest.raises(PacsUnavailable, match="rejected our association for now: Rejected Transient.*Local limit"):
            CGetRetriever().retrieve(pacs, "1.2.3.4", lambda b: 0, NODE_AE)


def test_orthanc_refuses_a_cget_from_an_unknown_ae(tmp_path: Any) -> None:
    """Orthanc accepts the association (echo and store are always allowed) but aborts a C-GET
    from an AE missing from DicomModalities: transient to us, with a reason that says so."""
    require_binary("Orthanc")
    files = tmp_path / "files"
    files.mkdir()
    study, paths = write_study("CT_small.dcm", files, patient_id="PW-F-1", issuer="", date="20240101",
                               modality="CT", body="CHEST")
    with Orthanc(tmp_path / "orthanc", modalities={"priorwatch": (NODE_AE, "127.0.0.1", 1)}, dicomweb=False) as o:
        o.upload(paths[0])
        pacs = PacsConfig(ae_title=o.aet, port=o.dicom_port, timeout_s=5)
        t0 = time.monotonic()
        with pytest.raises(PacsUnavailable, match=r"ORTHANC: C-GET timed out or was aborted"):
            CGetRetriever().retrieve(pacs, study, lambda b: 0, "STRANGER")
        assert time.monotonic() - t0 < 4.0  # Orthanc aborts at once: no wait for the timeout
        got: list[bytes] = []
        report = CGetRetriever().retrieve(pacs, study, lambda b: got.append(b) or 0, NODE_AE)  # type: ignore[func-returns-value]
        assert report.stored == 1 and len(got) == 1  # the same PACS serves the AE it knows


# -- a PACS that never answers ------------------------------------------------------------------

def test_cget_that_never_answers_times_out() -> None:
    release = threading.Event()
    seen = threading.Event()

    def stall(event: evt.Event) -> Iterator[Any]:
        seen.set()
        release.wait(15)  # accept the association and the request, then say nothing
        yield 0

    try:
        with get_scp(stall) as pacs:
            t0 = time.monotonic()
            with pytest.raises(PacsUnavailable, match="C-GET timed out or was aborted"):
                CGetRetriever().retrieve(pacs, "1.2.3.4", lambda b: 0, NODE_AE)
            elapsed = time.monotonic() - t0
            assert seen.is_set()  # it was the C-GET that stalled, not the association
            assert 0.9 <= elapsed < 5.0, elapsed  # pacs.timeout_s = 1
            release.set()
    finally:
        release.set()


# -- partial retrievals -------------------------------------------------------------------------

def test_partial_cget_when_the_pacs_cannot_send_a_class() -> None:
    """The PACS holds an instance of a class we did not offer to receive: that sub-operation fails
    and the final status is 0xB000 with counts."""
    study = generate_uid()
    instances = [_ct(study), _ct(study, UltrasoundImageStorage), _ct(study)]

    def serve(event: evt.Event) -> Iterator[Any]:
        assert event.identifier.StudyInstanceUID == study
        yield len(instances)
        for ds in instances:
            yield 0xFF00, ds

    got: list[bytes] = []
    with get_scp(serve) as pacs:
        pacs = pacs.model_copy(update={"timeout_s": 10})
        report = CGetRetriever().retrieve(pacs, study, lambda b: got.append(b) or 0, NODE_AE)  # type: ignore[func-returns-value]
    assert report.partial
    assert report.final_status == 0xB000
    assert (report.completed, report.failed, report.warning, report.stored) == (2, 1, 0, 2)
    assert len(got) == 2
    assert "2 completed, 1 failed" in report.reason and "0xB000" in report.reason


def test_partial_cget_when_our_sink_refuses_one() -> None:
    """Our side refuses one instance (disk full): the PACS counts it failed; we keep the rest."""
    study = generate_uid()
    instances = [_ct(study) for _ in range(3)]
    refused = str(instances[1].SOPInstanceUID)

    def serve(event: evt.Event) -> Iterator[Any]:
        yield len(instances)
        for ds in instances:
            yield 0xFF00, ds

    def sink(raw: bytes) -> int:
        return 0xA700 if refused.encode() in raw else 0

    with get_scp(serve) as pacs:
        pacs = pacs.model_copy(update={"timeout_s": 10})
        report = CGetRetriever().retrieve(pacs, study, sink, NODE_AE)
    assert report.partial and report.final_status == 0xB000
    assert (report.completed, report.failed, report.stored) == (2, 1, 2)
