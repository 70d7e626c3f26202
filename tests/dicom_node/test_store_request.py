"""The node reads a plain C-STORE request's command set directly into its primitive (issue 32,
item 1), with the values pynetdicom's pydicom path gives; a request carrying anything else (a
Move Originator, another command) is read by pynetdicom as before."""

from __future__ import annotations

import os
import subprocess
from io import BytesIO

import pytest
from pynetdicom import dimse_messages
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicom_node import StorageNode, netfast
from tests.conftest import require_binary

from .conftest import CT, StudyMaker, indexed_instances

STORESCU = "/usr/bin/storescu"  # DCMTK's (the venv's bin has pynetdicom's own storescu)
FIELDS = ("AffectedSOPClassUID", "AffectedSOPInstanceUID", "MessageID", "Priority",
          "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID", "_context_id")


def _request(sop_class: str, sop_instance: str, priority: int, originator: str | None, data: bytes) -> list[P_DATA]:
    p = C_STORE()
    p.MessageID = 5 + priority
    p.AffectedSOPClassUID = sop_class
    p.AffectedSOPInstanceUID = sop_instance
    p.Priority = priority
    if originator:
        p.MoveOriginatorApplicationEntityTitle = originator
        p.MoveOriginatorMessageID = 3
    p.DataSet = BytesIO(data)
    message = C_STORE_RQ()
    message.primitive_to_message(p)
    return list(message.encode_msg(1, 16384))  # pynetdicom's own encoding, as a peer sends it


def _pynetdicom_read(pdus: list[P_DATA]) -> C_STORE:
    message = DIMSEMessage()
    assert [message.decode_msg(p) for p in pdus][-1]
    return message.message_to_primitive()  # type: ignore[return-value]


def _node_read(pdus: list[P_DATA]) -> tuple[C_STORE, bool]:
    message = DIMSEMessage()
    results = [netfast._decode_store_fast(message, p) for p in pdus]
    complete, primitive = results[-1]
    assert complete
    if primitive is None:
        return message.message_to_primitive(), False  # type: ignore[return-value]
    primitive.DataSet = message.data_set
    primitive._context_id = message.context_id
    return primitive, True


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.2"])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.3.45"])  # even and odd lengths
@pytest.mark.parametrize("priority", [0, 1, 2])
@pytest.mark.parametrize("data", [b"\x08\x00\x18\x00" + b"x" * 100, b"y" * 40000])  # one PDU, three
def test_a_store_request_reads_as_pynetdicom_reads_it(sop_class: str, sop_instance: str, priority: int,
                                                      data: bytes) -> None:
    pdus = _request(sop_class, sop_instance, priority, None, data)
    theirs = _pynetdicom_read(pdus)
    ours, direct = _node_read(pdus)
    assert direct
    assert [getattr(ours, f) for f in FIELDS] == [getattr(theirs, f) for f in FIELDS]
    assert type(ours.AffectedSOPInstanceUID) is type(theirs.AffectedSOPInstanceUID)
    assert ours.DataSet.getvalue() == theirs.DataSet.getvalue() == data  # type: ignore[union-attr]


def test_a_request_with_a_move_originator_is_read_by_pynetdicom() -> None:
    pdus = _request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 2, "MOVER", b"z" * 64)
    ours, direct = _node_read(pdus)
    assert not direct
    assert ours.MoveOriginatorApplicationEntityTitle == "MOVER"
    assert ours.DataSet.getvalue() == b"z" * 64  # type: ignore[union-attr]


def test_the_node_reads_storescu_requests_without_a_command_dataset(
        node: StorageNode, maker: StudyMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    require_binary(STORESCU)
    decoded: list[object] = []
    stock = dimse_messages.decode

    def counting(*args: object, **kwargs: object) -> object:
        decoded.append(args)
        return stock(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dimse_messages, "decode", counting)
    p = subprocess.run([STORESCU, "-aet", "CR01", "-aec", node.settings.ae_title, "127.0.0.1", str(node.port),
                        *map(str, maker.study(2, CT))], env={**os.environ, "TCP_NODELAY": "1"},
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr[-500:]
    assert len(indexed_instances(node.settings)) == 2
    assert decoded == []  # stock pynetdicom decodes each request's command set into a Dataset
