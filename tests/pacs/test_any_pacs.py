"""Any PACS (issue 14): with DCMTK's dcmqrscp (no optional C-FIND keys, no issuer) as well as
Orthanc as the PACS, 8 patients' priors are found and fetched by C-GET and by C-MOVE, past
traps a careless selection falls into: a newer study of another body part that only its
description (or only its headers) tells apart, a newer non-comparable modality, another
issuer's patient with the same ID, and a patient ID holding a wildcard character."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import select

from dicom_node import Ingest, StorageNode
from dicom_node.pacs import PacsConfig, RetrieveMethod
from dicom_node.query import find_studies
from priorwatch.db import session_scope
from priorwatch.models import Study, StudyRole
from priorwatch.settings import Settings
from tests.conftest import free_port, require_binary
from tests.pacs.conftest import NODE_AE, write_study
from tests.peers import DcmQrScp, Orthanc
from workers.fetch import fetch_priors

ISSUER = "HOSP-A"
N_PATIENTS = 8
SMALL = "CT_small.dcm"  # small real image, relabelled per study: the tests are about selection


@dataclass
class World:
    kind: str
    peer: Orthanc | DcmQrScp
    node_port: int
    expected: dict[str, str] = field(default_factory=dict)  # patient id -> the prior's study UID
    patients: list[str] = field(default_factory=list)

    def config(self, method: RetrieveMethod) -> PacsConfig:
        return PacsConfig(ae_title=self.peer.aet, port=self.peer.dicom_port, retrieve=method, timeout_s=30)


def _history(files: Path) -> tuple[dict[str, str], list[str], list[Path]]:
    expected: dict[str, str] = {}
    patients: list[str] = []
    paths: list[Path] = []

    def study(pid: str, when: str, modality: str, body: str, issuer: str = ISSUER, **kw: str) -> str:
        uid, p = write_study(SMALL, files, patient_id=pid, issuer=issuer, date=when, modality=modality, body=body)
        if kw.get("description"):
            import pydicom

            for f in p:
                ds = pydicom.dcmread(f)
                ds.StudyDescription = kw["description"]
                ds.save_as(f)
        paths.extend(p)
        return uid

    for i in range(N_PATIENTS):
        pid = f"PW-ANY-{i}" if i != 7 else "PW-ANY-7*"  # a wildcard character in a real ID
        patients.append(pid)
        expected[pid] = study(pid, f"2024{i + 1:02d}01", "CR", "CHEST", description="XR CHEST PA")
        if i % 2 == 0:
            study(pid, "20220101", "CR", "CHEST", description="XR CHEST PA")  # older comparable
        else:
            study(pid, "20250101", "CT", "HEAD", description="CT HEAD")  # newer, another modality
        if i in (0, 1):
            study(pid, "20250201", "CR", "HAND", description="XR HAND")  # newer, another body part
        if i == 2:
            study(pid, "20250201", "CR", "KNEE")  # newer, only the headers say what it is
        if i == 3:
            study(pid, "20250301", "CR", "CHEST", issuer="HOSP-B", description="XR CHEST")  # same ID, other issuer
    study("PW-ANY-7X", "20250401", "CR", "CHEST", description="XR CHEST")  # what PW-ANY-7* would match
    return expected, patients, paths


@pytest.fixture(scope="module", params=["orthanc", "dcmqrscp"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = request.param
    tmp = tmp_path_factory.mktemp(kind)
    files = tmp / "files"
    files.mkdir()
    expected, patients, paths = _history(files)
    node_port = free_port()  # the PACS must know our node's address for C-MOVE
    peer: Orthanc | DcmQrScp
    if kind == "orthanc":
        require_binary("Orthanc")
        peer = Orthanc(tmp / "pacs", modalities={"priorwatch": (NODE_AE, "127.0.0.1", node_port)}, dicomweb=False)
        peer.start()
        for p in paths:
            peer.upload(p)
    else:
        require_binary("dcmqrscp")
        peer = DcmQrScp(tmp / "pacs", hosts={"priorwatch": (NODE_AE, "127.0.0.1", node_port)})
        peer.start()
        peer.load(paths)
    try:
        yield World(kind, peer, node_port, expected, patients)
    finally:
        peer.stop()


def _current(pid: str) -> Study:
    return Study(study_uid=f"2.25.{abs(hash(pid))}", patient_id=pid, issuer=ISSUER, modality="CR", body_part="CHEST",
                 study_date=date(2025, 6, 1), role=StudyRole.incoming.value)


@pytest.mark.parametrize("method", [RetrieveMethod.c_get, RetrieveMethod.c_move])
def test_eight_of_eight_priors_found_and_fetched(world: World, method: RetrieveMethod, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", dicom_port=world.node_port, ae_title=NODE_AE,
                        receive_processes=1, monitor_interval_s=0.1)
    settings.ensure_dirs()
    pacs = world.config(method)
    node = StorageNode(settings, monitor=False).start()  # C-MOVE's destination; schema for C-GET's sink
    try:
        sink = Ingest(settings, create_schema=False).sink(role=StudyRole.prior.value, calling_ae=pacs.ae_title)
        found = {}
        for pid in world.patients:
            out = fetch_priors(_current(pid), pacs, settings, sink)
            found[pid] = out.fetched + out.already_held
        hits = sum(found[pid] == [world.expected[pid]] for pid in world.patients)
        print(f"\n{world.kind} {method}: {hits}/{N_PATIENTS} priors found and fetched")
        assert found == {pid: [world.expected[pid]] for pid in world.patients}
        with session_scope(settings) as s:
            for pid in world.patients:
                st = s.exec(select(Study).where(Study.study_uid == world.expected[pid])).one()
                assert (st.patient_id, st.issuer, st.modality, st.body_part) == (pid, ISSUER, "CR", "CHEST")
                assert st.n_instances == 1
    finally:
        node.stop()


def test_query_keeps_only_exactly_this_patient(world: World) -> None:
    hits = find_studies(world.config(RetrieveMethod.c_get), "PW-ANY-7*", ISSUER, NODE_AE)
    assert {h.patient_id for h in hits} == {"PW-ANY-7*"}
    assert world.expected["PW-ANY-7*"] in {h.study_uid for h in hits}
    # Modality comes from the series level where the PACS gives no ModalitiesInStudy.
    assert all(h.modalities for h in hits)
    other_issuer = find_studies(world.config(RetrieveMethod.c_get), "PW-ANY-3", "HOSP-B", NODE_AE)
    assert other_issuer and "HOSP-A" not in {h.issuer for h in other_issuer}
