"""The node answers only to its own AE title (issue 27): an association request calling any other
title is rejected with "called AE title not recognised" (A-ASSOCIATE-RJ permanent, service user,
reason 7) by a real DCMTK `storescu` and a pynetdicom SCU, and logged without patient data; calling
our title stores as before."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node import StorageNode
from tests.conftest import require_binary

from .conftest import CT, StudyMaker

HOST = "127.0.0.1"
STORESCU = "/usr/bin/storescu"  # DCMTK's (the venv's bin has pynetdicom's own storescu)


def _storescu(node: StorageNode, called: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    require_binary(STORESCU)
    return subprocess.run([STORESCU, "-aet", "CR01", "-aec", called, HOST, str(node.port), *map(str, files)],
                          env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=60)


def test_storescu_calling_another_ae_title_is_refused(node: StorageNode, maker: StudyMaker,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    files = maker.study(2, CT, patient_id="PW-SECRET-77")
    with caplog.at_level(logging.WARNING, logger="dicom_node.guard"):
        p = _storescu(node, "ANYTHING", files)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "Called AE Title Not Recognized" in p.stdout + p.stderr
    assert node.counts["stored"] == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "called AE title 'ANYTHING' is not ours" in logged
    assert "PW-SECRET-77" not in logged  # an association is refused before any data set is read


def test_storescu_calling_our_ae_title_stores(node: StorageNode, maker: StudyMaker) -> None:
    p = _storescu(node, node.settings.ae_title, maker.study(2, CT))
    assert p.returncode == 0, p.stdout + p.stderr
    assert node.counts["stored"] == 2


def test_pynetdicom_scu_gets_the_standard_reject(node: StorageNode) -> None:
    ae = AE(ae_title="CR01")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, node.port, ae_title="NOT-PRIORWATCH")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)
    assoc = ae.associate(HOST, node.port, ae_title=node.settings.ae_title)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
