"""What an association's set-up costs the node (issue 32, item 1): a sender proposes the same
contexts every time (DCMTK storescu: ~130), so the node checks each of their UIDs once per
process, not once per association; pynetdicom's standard logging handlers, which format every
proposed context for a logger that drops them, are bound only when its logger would print them.
Checks stay as they were: a bad UID is refused every time, a warning is logged every time."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pydicom.uid
from pynetdicom import _config as pn_config
from pynetdicom import evt
from pynetdicom._handlers import standard_pdu_recv_handler
from pynetdicom.presentation import PresentationContext

from dicom_node import StorageNode, netfast
from tests.conftest import require_binary

from .conftest import CT, StudyMaker, indexed_instances

STORESCU = "/usr/bin/storescu"  # DCMTK's (the venv's bin has pynetdicom's own storescu)


def _storescu(node: StorageNode, files: list[Path]) -> None:
    require_binary(STORESCU)
    p = subprocess.run([STORESCU, "-aet", "CR01", "-aec", node.settings.ae_title, "127.0.0.1", str(node.port),
                        *map(str, files)], env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr[-500:]


@pytest.fixture
def settings(tmp_path: Path) -> object:
    """These tests are about pynetdicom's accept path (`dicom_node.netfast`; the lean path,
    `dicom_node.lean`, has no pynetdicom negotiation): its node, whatever the default."""
    from .conftest import make_settings

    return make_settings(tmp_path, node_accept="pynetdicom")


@pytest.fixture
def uid_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every UID whose conformance pydicom checks (each stock `set_uid` and
    `add_transfer_syntax` call checks it), recorded while the fixture is live."""
    seen: list[str] = []
    stock = pydicom.uid.UID.is_valid

    def is_valid(self: pydicom.uid.UID) -> bool:
        seen.append(str(self))
        return bool(stock.fget(self))  # type: ignore[attr-defined]

    monkeypatch.setattr(pydicom.uid.UID, "is_valid", property(is_valid))
    yield seen


def test_a_repeated_association_request_checks_its_uids_once(node: StorageNode, maker: StudyMaker,
                                                             uid_checks: list[str]) -> None:
    netfast._uid_memo.clear()  # the node's own supported contexts went through it at start
    netfast._quiet_syntaxes.clear()
    uid_checks.clear()
    _storescu(node, maker.study(2, CT))
    first = len(uid_checks)
    uid_checks.clear()
    _storescu(node, maker.study(2, CT))
    # storescu proposes ~130 contexts: over a hundred UID checks the first time, then only
    # the few that DIMSE messages carry (each C-STORE's SOP class and instance UIDs).
    assert first > 100
    assert len(uid_checks) < 20, len(uid_checks)
    assert len(indexed_instances(node.settings)) == 4


def test_a_bad_uid_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            netfast._set_uid_memo(b"1." + b"2" * 70, "abstract_syntax")  # over 64 characters


def test_a_transfer_syntax_warning_is_logged_every_time(caplog: pytest.LogCaptureFixture) -> None:
    not_a_transfer_syntax = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage: a SOP class
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        for _ in range(2):
            cx = PresentationContext()
            cx.add_transfer_syntax(not_a_transfer_syntax)
            assert cx.transfer_syntax == [not_a_transfer_syntax]
    assert sum("not a transfer syntax" in r.getMessage() for r in caplog.records) == 2


def test_a_repeated_transfer_syntax_is_listed_once() -> None:
    cx = PresentationContext()
    for ts in (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian,
               pydicom.uid.ExplicitVRLittleEndian):
        cx.add_transfer_syntax(ts)
    assert cx.transfer_syntax == [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian]


@pytest.fixture
def restore_log_handler_level() -> Iterator[None]:
    level = pn_config.LOG_HANDLER_LEVEL
    yield
    pn_config.LOG_HANDLER_LEVEL = level


def _pdu_recv_handlers(node: StorageNode) -> list[object]:
    server = node._server
    assert server is not None
    return [h for h, _ in server._handlers.get(evt.EVT_PDU_RECV, [])]


@pytest.mark.usefixtures("restore_log_handler_level")
def test_standard_log_handlers_are_bound_only_where_pynetdicom_logs(settings: object) -> None:
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    try:
        logger.setLevel(logging.WARNING)  # what priorwatch.log sets
        with StorageNode(settings, monitor=False) as quiet:  # type: ignore[arg-type]
            assert standard_pdu_recv_handler not in _pdu_recv_handlers(quiet)
        logger.setLevel(logging.DEBUG)  # someone debugging negotiation gets pynetdicom's log back
        with StorageNode(settings, monitor=False) as verbose:  # type: ignore[arg-type]
            assert standard_pdu_recv_handler in _pdu_recv_handlers(verbose)
    finally:
        logger.setLevel(level)


def _contexts() -> list[PresentationContext]:
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts

    out = []
    for i, storage in enumerate(AllStoragePresentationContexts[:40]):
        cx = PresentationContext()
        cx.context_id = 2 * i + 1
        cx.abstract_syntax = storage.abstract_syntax
        for ts in ALL_TRANSFER_SYNTAXES[: 1 + i % 5]:  # one to five syntaxes, odd and even lengths
            cx.add_transfer_syntax(ts)
        out.append(cx)
    return out


def _items(item: object) -> list[tuple[type, object]]:
    subs = getattr(item, "abstract_transfer_syntax_sub_items", None) or getattr(item, "transfer_syntax_sub_item")
    return [(type(s), getattr(s, "abstract_syntax_name", None) or s.transfer_syntax_name) for s in subs]


@pytest.mark.parametrize("result", [None, 0, 3, 4])  # requested; accepted; rejected (two reasons)
def test_presentation_context_items_code_as_pynetdicom_codes_them(result: int | None) -> None:
    from pynetdicom.pdu_items import PDUItem, PresentationContextItemAC, PresentationContextItemRQ

    kind = PresentationContextItemRQ if result is None else PresentationContextItemAC
    for cx in _contexts():
        if result is not None:
            cx.result = result
            cx.transfer_syntax = [cx.transfer_syntax[-1]]
        item = kind()
        item.from_primitive(cx)
        theirs = PDUItem.encode(item)  # pynetdicom's generic field-codec loop
        assert item.encode() == theirs
        read_theirs, read_ours = kind(), kind()
        PDUItem.decode(read_theirs, theirs)
        read_ours.decode(theirs)
        assert read_ours.presentation_context_id == read_theirs.presentation_context_id == cx.context_id
        assert getattr(read_ours, "result_reason", None) == getattr(read_theirs, "result_reason", None)
        assert _items(read_ours) == _items(read_theirs)


def test_a_repeated_context_item_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A requestor proposes the same contexts in every association: the second decode of an item's
    bytes reuses the first one's sub-items (pynetdicom's generic decoder is not called again)
    and reads what pynetdicom reads, with its own context ID."""
    from pynetdicom.pdu_items import PDUItem, PresentationContextItemRQ

    cx = _contexts()[7]
    item = PresentationContextItemRQ()
    item.from_primitive(cx)
    raw = item.encode()
    first = PresentationContextItemRQ()
    first.decode(raw)

    def no_generic_decode(*_a: object) -> None:
        raise AssertionError("sub-items decoded again")

    monkeypatch.setattr(PresentationContextItemRQ, "_wrap_generate_items", no_generic_decode)
    again = PresentationContextItemRQ()
    again.decode(raw[:4] + bytes([cx.context_id + 2]) + raw[5:])  # another association's ID, same syntaxes
    theirs = PresentationContextItemRQ()
    monkeypatch.undo()
    PDUItem.decode(theirs, raw)
    assert (again.presentation_context_id, _items(again)) == (cx.context_id + 2, _items(theirs))
    assert again.abstract_transfer_syntax_sub_items is not first.abstract_transfer_syntax_sub_items
