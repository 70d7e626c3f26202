"""The node encodes its C-STORE responses directly (issue 32, item 1): byte for byte what
pynetdicom writes through a pydicom Dataset, without building and encoding that Dataset twice
per instance. Refusals keep their status and comment (the other node tests send them)."""

from __future__ import annotations

import os
import subprocess

import pytest
from pynetdicom import dimse_messages
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from dicom_node import StorageNode
from dicom_node.netfast import store_response_command
from tests.conftest import require_binary

from .conftest import CT, StudyMaker, indexed_instances

STORESCU = "/usr/bin/storescu"  # DCMTK's (the venv's bin has pynetdicom's own storescu)


def _pynetdicom_encoding(primitive: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)  # type: ignore[return-value]


def _response(sop_class: str | None, sop_instance: str | None, status: int, comment: str | None) -> C_STORE:
    p = C_STORE()
    p.MessageIDBeingRespondedTo = 7
    p.Status = status
    if sop_class is not None:
        p.AffectedSOPClassUID = sop_class
    if sop_instance is not None:
        p.AffectedSOPInstanceUID = sop_instance
    if comment is not None:
        p.ErrorComment = comment
    return p


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.2", None])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.3.45", None])  # even and odd lengths
@pytest.mark.parametrize("status,comment", [
    (0x0000, None), (0x0000, "duplicate"), (0xC218, "pixel data incomplete"), (0xA700, "out of resources: x"),
])
def test_a_store_response_is_encoded_as_pynetdicom_encodes_it(sop_class: str | None, sop_instance: str | None,
                                                             status: int, comment: str | None) -> None:
    p = _response(sop_class, sop_instance, status, comment)
    assert store_response_command(p) == _pynetdicom_encoding(p)


def test_a_response_naming_an_offending_element_is_left_to_pynetdicom() -> None:
    p = _response("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 0xC217, "bad uid")
    p.OffendingElement = [0x00080018]
    assert store_response_command(p) is None


def test_the_node_answers_storescu_without_encoding_a_response_dataset(
        node: StorageNode, maker: StudyMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    require_binary(STORESCU)
    encoded: list[object] = []
    stock = dimse_messages.encode

    def counting(ds: object, *args: object, **kwargs: object) -> object:
        encoded.append(ds)
        return stock(ds, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dimse_messages, "encode", counting)
    files = maker.study(2, CT)
    p = subprocess.run([STORESCU, "-aet", "CR01", "-aec", node.settings.ae_title, "127.0.0.1", str(node.port),
                        *map(str, files)], env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr[-500:]
    assert len(indexed_instances(node.settings)) == 2
    assert encoded == []  # stock pynetdicom encodes each response's command set twice
