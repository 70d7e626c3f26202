"""Finding and retrieving priors from a real Orthanc by C-FIND, QIDO-RS, C-GET and WADO-RS."""

from __future__ import annotations

import pydicom
import pytest

from dicom_node.pacs import PacsConfig, PacsError, PacsUnavailable, RetrieveMethod
from dicom_node.query import count_instances, find_studies, find_studies_qido
from dicom_node.retrieve import CGetRetriever, WadoRsRetriever
from tests.conftest import free_port
from tests.pacs.conftest import NODE_AE, History
from tests.peers import Orthanc


def _pacs(o: Orthanc, **kw: object) -> PacsConfig:
    return PacsConfig(ae_title=o.aet, port=o.dicom_port, dicomweb_url=o.dicomweb_url, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["study", "patient"])
def test_cfind_returns_only_this_patients_studies(pacs_history: tuple[Orthanc, History], model: str) -> None:
    o, h = pacs_history
    hits = {x.study_uid: x for x in find_studies(_pacs(o, query_model=model), h.patient_id, h.issuer, NODE_AE)}
    assert set(hits) == {h.recent_cr, h.older_cr, h.ct_head}  # decoy patient absent
    recent = hits[h.recent_cr]
    assert recent.modalities == ["CR"] and recent.body_part == "CHEST" and recent.n_instances == 2
    assert str(recent.study_date) == "2025-03-01"
    assert hits[h.ct_head].body_part == "HEAD"


def test_qido_agrees_with_cfind(pacs_history: tuple[Orthanc, History]) -> None:
    o, h = pacs_history
    qido = {x.study_uid: x for x in find_studies_qido(_pacs(o), h.patient_id, h.issuer)}
    assert set(qido) == {h.recent_cr, h.older_cr, h.ct_head}
    assert qido[h.recent_cr].n_instances == 2 and qido[h.recent_cr].modalities == ["CR"]


def test_instance_count_confirms_completeness(pacs_history: tuple[Orthanc, History]) -> None:
    o, h = pacs_history
    assert count_instances(_pacs(o), h.recent_cr, NODE_AE) == 2
    assert count_instances(_pacs(o), "1.2.3.999", NODE_AE) is None


@pytest.mark.parametrize("retriever", [CGetRetriever(), WadoRsRetriever()], ids=["c-get", "wado-rs"])
def test_retrieve_whole_study(pacs_history: tuple[Orthanc, History], retriever: object) -> None:
    o, h = pacs_history
    got: list[bytes] = []

    def sink(raw: bytes) -> int:
        got.append(raw)
        return 0

    report = retriever.retrieve(_pacs(o), h.recent_cr, sink, NODE_AE)  # type: ignore[attr-defined]
    assert report.stored == 2 and not report.partial
    import io

    uids = {pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True).SOPInstanceUID for b in got}
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in h.files[h.recent_cr]}
    assert uids == expected


def test_unknown_calling_ae_is_refused_readably(pacs_history: tuple[Orthanc, History]) -> None:
    o, h = pacs_history
    with pytest.raises(PacsUnavailable, match="known to the PACS"):
        find_studies(_pacs(o), h.patient_id, h.issuer, calling_ae="STRANGER")


def test_pacs_down_is_transient() -> None:
    pacs = PacsConfig(ae_title="NOBODY", port=free_port(), timeout_s=2, dicomweb_url=f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(PacsUnavailable):
        find_studies(pacs, "X")
    with pytest.raises(PacsUnavailable):
        CGetRetriever().retrieve(pacs, "1.2.3", lambda b: 0, NODE_AE)
    with pytest.raises(PacsUnavailable):
        WadoRsRetriever().retrieve(pacs, "1.2.3", lambda b: 0, NODE_AE)


def test_wado_unknown_study_is_permanent(pacs_history: tuple[Orthanc, History]) -> None:
    o, _ = pacs_history
    with pytest.raises(PacsError):
        WadoRsRetriever().retrieve(_pacs(o, retrieve=RetrieveMethod.wado_rs), "1.2.3.4.404", lambda b: 0, NODE_AE)
