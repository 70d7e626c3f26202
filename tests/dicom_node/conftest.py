"""Fixtures for the DICOM edge: real chest images from pydicom-data, re-UIDed per test; a node
on a free port in its own data dir."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from priorwatch.settings import Settings
from tests.conftest import free_port  # one port registry for the whole test process

if TYPE_CHECKING:
    from priorwatch.models import Instance, Study

CR = "RG1_UNCR.dcm"  # real chest CR, 1955 x 1841, ~7.2 MB
CT = "CT_small.dcm"  # small CT, ~39 kB




def make_settings(tmp: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        data_dir=tmp / "data", dicom_port=free_port(), completion_grace_s=0.3,
        quiet_period_s={"default": 2.0}, monitor_interval_s=0.1, ae_title="PRIORWATCH",
        receive_processes=1,  # node.counts are per process; test_receivers runs several
    )
    base.update(kw)
    s = Settings(**base)  # type: ignore[arg-type]
    s.ensure_dirs()
    return s


class StudyMaker:
    """Writes re-UIDed copies of real images: one study = one patient, N instances."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def study(self, n: int = 3, source: str = CT, *, patient_id: str = "PW-TEST-1", modality: str | None = None,
              study_uid: str | None = None, series_uid: str | None = None, **changes: object) -> list[Path]:
        study_uid = study_uid or generate_uid()
        series_uid = series_uid or generate_uid()
        ds0 = dcmread(get_testdata_file(source))
        out = []
        for _ in range(n):
            ds = ds0.copy()
            ds.file_meta = ds0.file_meta.copy()
            sop = generate_uid()
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.PatientID = patient_id
            ds.PatientName = "Test^Patient"
            if modality:
                ds.Modality = modality
            for k, v in changes.items():
                if v is None:
                    if k in ds:
                        delattr(ds, k)
                else:
                    setattr(ds, k, v)
            self.n += 1
            p = self.root / f"i{self.n:05d}.dcm"
            ds.save_as(p, enforce_file_format=True)
            out.append(p)
        return out


@pytest.fixture
def maker(tmp_path: Path) -> StudyMaker:
    d = tmp_path / "src"
    d.mkdir()
    return StudyMaker(d)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def node(settings: Settings) -> Iterator["object"]:
    from dicom_node import StorageNode

    n = StorageNode(settings).start()
    try:
        yield n
    finally:
        n.stop()


def wait_for(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def broker_messages(settings: Settings) -> list[dict[str, object]]:
    """The task messages the node left in the kombu filesystem broker: [{task, args}]. A file
    kombu is still writing (empty or cut JSON) is not a message yet: the callers poll again."""
    out = []
    for f in sorted(settings.broker_dir.glob("*.msg")):
        try:
            msg = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        body = json.loads(base64.b64decode(msg["body"]))
        out.append({"task": msg["headers"]["task"], "args": body[0]})
    return out


def indexed_instances(settings: Settings) -> list["Instance"]:
    """Every Instance row of the node's index."""
    from sqlmodel import select

    from priorwatch.db import session_scope
    from priorwatch.models import Instance

    with session_scope(settings) as s:
        return list(s.exec(select(Instance)))


def indexed_studies(settings: Settings) -> list["Study"]:
    """Every Study row of the node's index."""
    from sqlmodel import select

    from priorwatch.db import session_scope
    from priorwatch.models import Study

    with session_scope(settings) as s:
        return list(s.exec(select(Study)))
