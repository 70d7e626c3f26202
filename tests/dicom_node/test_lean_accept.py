"""The node's own accept path (`PRIORWATCH_NODE_ACCEPT=lean`, dicom_node.lean) against peers it
did not write: DCMTK storescu (transfer syntax options, compressed data, fragments, several
files per association) and echoscu, a pynetdicom SCU, and raw sockets that stall, abort
mid-data-set or call another AE. What it writes is what pynetdicom's path writes."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from benchmarks import rawscu
from dicom_node import StorageNode, lean, send_files, send_files_detailed, statuses
from dicom_node.netfast import store_response_command
from priorwatch.settings import Settings
from tests.conftest import require_binary

from .conftest import CR, CT, StudyMaker, indexed_instances, indexed_studies, make_settings, wait_for
from .test_node_process import _small_fs_wrapper, _start, _stop

HOST = "127.0.0.1"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def _lean(tmp: Path, **kw: object) -> Settings:
    return make_settings(tmp, node_accept="lean", **kw)


@pytest.fixture
def lean_node(tmp_path: Path) -> Iterator[StorageNode]:
    node = StorageNode(_lean(tmp_path / "lean")).start()
    try:
        yield node
    finally:
        node.stop()


def _storescu(node: StorageNode, files: list[Path], *opts: str, called: str = "PRIORWATCH",
              calling: str = "CR01") -> subprocess.CompletedProcess[str]:
    require_binary(STORESCU)
    return subprocess.run([STORESCU, *opts, "-aet", calling, "-aec", called, HOST, str(node.port), *map(str, files)],
                          env=DCMTK_ENV, capture_output=True, text=True, timeout=60)


def _differing(sent: object, stored: object) -> list[object]:
    """Elements whose values differ (DCMTK storescu drops trailing padding, FFFC,FFFC)."""
    keys = {k for k in list(sent.keys()) + list(stored.keys()) if k != 0xFFFCFFFC}  # type: ignore[attr-defined]
    return sorted(k for k in keys if sent.get(k) != stored.get(k))  # type: ignore[attr-defined]


def _spooled(settings: Settings) -> dict[str, Path]:
    return {r.sop_instance_uid: Path(r.path) for r in indexed_instances(settings)}


def test_lean_is_the_accept_path_the_setting_names(lean_node: StorageNode) -> None:
    assert isinstance(lean_node._server, lean.LeanServer)


@pytest.mark.parametrize("opt", ["-xs", "-xe", "-xb", "-xi"])
def test_storescu_transfer_syntax_options_store_every_file(lean_node: StorageNode, maker: StudyMaker,
                                                           opt: str) -> None:
    files = maker.study(3, CT)
    r = _storescu(lean_node, files, opt)
    assert r.returncode == 0, r.stderr
    assert lean_node.counts["stored"] == 3
    rows = {i.sop_instance_uid for i in indexed_instances(lean_node.settings)}
    assert rows == {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


def test_compressed_jpeg2000_is_stored_as_sent(lean_node: StorageNode, maker: StudyMaker) -> None:
    files = maker.study(1, "RG1_J2KR.dcm")
    r = _storescu(lean_node, files, "-xv")  # storescu proposes JPEG 2000 lossless only when told to
    assert r.returncode == 0, r.stderr
    [row] = indexed_instances(lean_node.settings)
    stored = Path(row.path)
    assert str(dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.90"
    sent, got = dcmread(files[0]), dcmread(stored)
    assert got.PixelData == sent.PixelData  # the JPEG 2000 fragments as sent: not decoded, not re-encoded
    assert _differing(sent, got) == []


def test_small_pdus_force_fragments_and_reassemble_exactly(tmp_path: Path, maker: StudyMaker) -> None:
    """Our maximum PDU 4096: storescu cuts a 7 MB data set into ~1,800 P-DATA PDUs; and its own
    --max-pdu 4096 caps what it receives (our responses)."""
    node = StorageNode(_lean(tmp_path / "n", dicom_max_pdu_bytes=4096)).start()
    try:
        files = maker.study(1, CR) + maker.study(2, CT)
        r = _storescu(node, files, "--max-pdu", "4096")
        assert r.returncode == 0, r.stderr
        got = _spooled(node.settings)
        for p in files:
            sop = str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            sent, stored = dcmread(p), dcmread(got[sop])  # storescu may re-encode: compare values
            assert stored.PixelData == sent.PixelData
            assert _differing(sent, stored) == []
    finally:
        node.stop()


def test_spool_file_is_byte_for_byte_what_pynetdicoms_path_writes(tmp_path: Path, maker: StudyMaker) -> None:
    files = maker.study(2, CT)
    written = []
    for accept in ("pynetdicom", "lean"):
        node = StorageNode(make_settings(tmp_path / accept, node_accept=accept)).start()
        try:
            r = _storescu(node, files)
            assert r.returncode == 0, r.stderr
            written.append(_spooled(node.settings))
        finally:
            node.stop()
    assert set(written[0]) == set(written[1]) and len(written[0]) == 2
    for sop, path in written[0].items():
        assert written[1][sop].read_bytes() == path.read_bytes()
        assert written[1][sop] != path  # two nodes, two spools: the bytes compared are two files


def test_echoscu_and_pynetdicom_scu(lean_node: StorageNode, maker: StudyMaker) -> None:
    require_binary(ECHOSCU)
    r = subprocess.run([ECHOSCU, "-aec", "PRIORWATCH", HOST, str(lean_node.port)], env=DCMTK_ENV,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    files = maker.study(3, CT)
    assert send_files(files, HOST, lean_node.port, "PRIORWATCH", calling_ae="MR01") == [0, 0, 0]
    assert lean_node.counts["stored"] == 3


def test_release_marks_the_studies_stored_in_the_association(lean_node: StorageNode, maker: StudyMaker) -> None:
    files = maker.study(2, CT)
    assert _storescu(lean_node, files).returncode == 0
    [study] = indexed_studies(lean_node.settings)
    assert study.released_at is not None


def test_refusals_carry_the_statuses_of_pynetdicoms_path(lean_node: StorageNode, maker: StudyMaker) -> None:
    ok = maker.study(1, CT)
    no_patient = maker.study(1, CT, PatientID=None)
    other_patient = maker.study(1, CT, patient_id="PW-OTHER", study_uid=str(dcmread(ok[0]).StudyInstanceUID))
    results = send_files_detailed(ok + no_patient + other_patient, HOST, lean_node.port, "PRIORWATCH")
    assert [s for s, _ in results] == [0, statuses.MISSING_PATIENT_ID, statuses.PATIENT_MISMATCH]
    assert results[1][1] == statuses.describe(statuses.MISSING_PATIENT_ID)


def test_unknown_called_ae_is_rejected(lean_node: StorageNode, maker: StudyMaker) -> None:
    r = _storescu(lean_node, maker.study(1, CT), called="SOMEONE")
    assert r.returncode != 0
    assert "Called AE Title Not Recognized" in r.stderr
    assert lean_node.counts["stored"] == 0


def test_unsupported_abstract_and_transfer_syntaxes_are_refused_per_context(lean_node: StorageNode) -> None:
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context("1.2.3.4.5.6.7", ["1.2.840.10008.1.2"])  # not a SOP class we serve
    ae.add_requested_context(CTImageStorage, ["1.2.3.999"])  # no transfer syntax we know
    assoc = ae.associate(HOST, lean_node.port, ae_title="PRIORWATCH")
    try:
        assert assoc.is_established
        results = {str(cx.abstract_syntax): cx.result for cx in assoc.accepted_contexts + assoc.rejected_contexts}
        assert results == {str(Verification): 0x00, "1.2.3.4.5.6.7": 0x03, str(CTImageStorage): 0x04}
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()


# -- raw peers ----------------------------------------------------------------------------------
def _rq(called: str = "PRIORWATCH") -> bytes:
    return rawscu.associate_rq(called, "RAW", [(1, CTImageStorage, "1.2.840.10008.1.2.1")])


def _read_pdu(s: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    s.settimeout(timeout)
    return rawscu._read_pdu(s)


def _associated(port: int) -> socket.socket:
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(_rq())
    kind, body = _read_pdu(s)
    assert kind == 0x02
    return s


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def test_abort_mid_data_set_leaves_no_file_and_no_row(lean_node: StorageNode, maker: StudyMaker) -> None:
    inst = rawscu.read_instance(maker.study(1, CR)[0])
    pdus = rawscu.store_pdus(inst, 1, 1, 65536)
    ends, pos = [], 0
    while pos < len(pdus):  # where each P-DATA PDU ends
        pos += 6 + struct.unpack_from(">I", pdus, pos + 2)[0]
        ends.append(pos)
    s = _associated(lean_node.port)
    s.sendall(pdus[: ends[len(ends) // 2]])  # the command and half the data set's PDUs
    s.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 0, 0))  # A-ABORT
    assert _closed_within(s, 5)
    s.close()
    assert wait_for(lambda: not lean_node._server.active_associations, 5)
    assert indexed_instances(lean_node.settings) == []
    assert [p for p in lean_node.settings.spool_dir.rglob("*") if p.is_file()] == []
    assert lean_node.counts["stored"] == 0


def test_a_peer_stalled_mid_pdu_is_dropped_and_frees_its_slot(tmp_path: Path, maker: StudyMaker) -> None:
    node = StorageNode(_lean(tmp_path / "n", dicom_pdu_timeout_s=1.0, dicom_max_associations=1)).start()
    try:
        inst = rawscu.read_instance(maker.study(1, CT)[0])
        pdus = rawscu.store_pdus(inst, 1, 1, 0)
        s = _associated(node.port)
        s.sendall(pdus[:100])  # the header of a P-DATA PDU and a little of it, then nothing
        # While it holds the node's one association, a second one is refused (local limit) ...
        r = _storescu(node, maker.study(1, CT))
        assert r.returncode != 0 and "Local Limit Exceeded" in r.stderr
        t0 = time.monotonic()
        assert _closed_within(s, 10)
        assert time.monotonic() - t0 < 5
        s.close()
        # ... and once it is dropped, a sender gets through; nothing of the stalled one was kept.
        files = maker.study(1, CT)
        assert wait_for(lambda: _storescu(node, files).returncode == 0, 10, 0.2)
        assert {r.sop_instance_uid for r in indexed_instances(node.settings)} == {
            str(dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)}
    finally:
        node.stop()


def test_no_association_request_within_artim_is_dropped(tmp_path: Path) -> None:
    node = StorageNode(_lean(tmp_path / "n", dicom_artim_timeout_s=1.0)).start()
    try:
        s = socket.create_connection((HOST, node.port), timeout=10)
        t0 = time.monotonic()
        assert _closed_within(s, 10)
        assert time.monotonic() - t0 < 5
        s.close()
    finally:
        node.stop()


def test_an_idle_association_is_aborted(tmp_path: Path) -> None:
    node = StorageNode(_lean(tmp_path / "n", dicom_idle_timeout_s=1.0)).start()
    try:
        s = _associated(node.port)
        kind, body = _read_pdu(s, 10)
        assert kind == 0x07  # A-ABORT from the service provider
        assert body[2] == 0x02
        s.close()
    finally:
        node.stop()


def test_a_pdu_longer_than_negotiated_is_aborted_unread(tmp_path: Path) -> None:
    node = StorageNode(_lean(tmp_path / "n", dicom_max_pdu_bytes=65536)).start()
    try:
        s = _associated(node.port)
        s.sendall(struct.pack(">BBI", 0x04, 0, 1 << 30))
        kind, body = _read_pdu(s, 5)
        assert kind == 0x07 and body[2:] == bytes((0x02, 0x06))
        s.close()
    finally:
        node.stop()


def test_a_response_too_long_for_the_peers_pdu_is_fragmented() -> None:
    command = lean.response_command(0x8001, 7, 0xA700, sop_class_uid="1.2.3", sop_instance_uid="1.2.3.4",
                                    comment="out of resources: No space left on device")
    pdus = lean.p_data(3, command, 40)
    got, pos, controls = b"", 0, []
    while pos < len(pdus):
        kind, _, length = struct.unpack_from(">BBI", pdus, pos)
        assert kind == 0x04 and length <= 40
        pdv_len, cx, control = struct.unpack_from(">IBB", pdus, pos + 6)
        assert cx == 3
        got += pdus[pos + 12:pos + 6 + 4 + pdv_len]
        controls.append(control)
        pos += 6 + length
    assert got == command
    assert controls[-1] == 0x03 and set(controls[:-1]) == {0x01}


def test_a_store_response_is_what_pynetdicoms_path_encodes() -> None:
    from pynetdicom.dimse_primitives import C_STORE

    p = C_STORE()
    p.MessageIDBeingRespondedTo = 12
    p.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    p.AffectedSOPInstanceUID = "1.2.3.45"
    p.Status = 0xC216
    p.ErrorComment = "refused: other patient's study (quarantined)"
    assert lean.response_command(0x8001, 12, 0xC216, sop_class_uid=p.AffectedSOPClassUID,
                                 sop_instance_uid=p.AffectedSOPInstanceUID,
                                 comment=p.ErrorComment) == store_response_command(p)


def test_disk_full_gets_a700_and_the_node_keeps_serving(tmp_path: Path, maker: StudyMaker) -> None:
    settings = _lean(tmp_path, quiet_period_s={"default": 60.0})
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    wrapper, preexec = _small_fs_wrapper(settings.spool_dir, "2m")
    from priorwatch.db import init_db

    init_db(settings)
    big = maker.study(1, CR)
    small = maker.study(2, CT)
    proc = _start(settings, wrapper, preexec)
    try:
        results = send_files_detailed(small[:1] + big + small[1:], HOST, settings.dicom_port, settings.ae_title)
        assert [s for s, _ in results] == [0, statuses.OUT_OF_RESOURCES, 0]
        assert {r.sop_instance_uid for r in indexed_instances(settings)} == {
            str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in small}
    finally:
        _stop(proc)


def test_negotiation_items_it_does_not_support_are_read_past(lean_node: StorageNode, maker: StudyMaker) -> None:
    """User identity (positive response asked), SCP/SCU role selection, asynchronous operations and
    SOP class extended negotiation: accepted without answering them (PS3.7 D.3.3: the defaults hold)."""
    from pynetdicom.pdu_primitives import (AsynchronousOperationsWindowNegotiation, SCP_SCU_RoleSelectionNegotiation,
                                           SOPClassExtendedNegotiation, UserIdentityNegotiation)

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage)
    uid = UserIdentityNegotiation()
    uid.user_identity_type = 2
    uid.positive_response_requested = True
    uid.primary_field = b"tech"
    uid.secondary_field = b"secret"
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role, role.scp_role = True, False
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked, window.maximum_number_operations_performed = 4, 4
    ext = SOPClassExtendedNegotiation()
    ext.sop_class_uid = CTImageStorage
    ext.service_class_application_information = b"\x02\x00\x00\x00\x01\x00"
    assoc = ae.associate(HOST, lean_node.port, ae_title="PRIORWATCH", ext_neg=[uid, role, window, ext])
    try:
        assert assoc.is_established
        assert assoc.acceptor.user_identity is None and assoc.acceptor.asynchronous_operations == (1, 1)
        assert assoc.send_c_store(dcmread(maker.study(1, CT)[0])).Status == 0
    finally:
        assoc.release()
    assert lean_node.counts["stored"] == 1


def test_a_store_naming_us_as_move_originator_is_filed_as_a_prior(lean_node: StorageNode, maker: StudyMaker) -> None:
    ae = AE(ae_title="PACS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(HOST, lean_node.port, ae_title="PRIORWATCH")
    try:
        [moved] = maker.study(1, CT)
        [incoming] = maker.study(1, CT)
        assert assoc.send_c_store(dcmread(moved), originator_aet="PRIORWATCH", originator_id=7).Status == 0
        assert assoc.send_c_store(dcmread(incoming)).Status == 0
    finally:
        assoc.release()
    roles = {s.study_uid: s.role for s in indexed_studies(lean_node.settings)}
    assert roles == {str(dcmread(moved).StudyInstanceUID): "prior", str(dcmread(incoming).StudyInstanceUID): "incoming"}


def test_stopping_the_node_aborts_an_open_association_at_once(tmp_path: Path) -> None:
    node = StorageNode(_lean(tmp_path / "n")).start()
    s = _associated(node.port)
    try:
        t0 = time.monotonic()
        node.stop()
        assert time.monotonic() - t0 < 3
        kind, body = _read_pdu(s, 5)
        assert kind == 0x07 and body[2] == 0x00  # A-ABORT, service user
    finally:
        s.close()


def test_a_connection_that_cannot_be_served_leaves_the_node_accepting(lean_node: StorageNode,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = lean.LeanServer._start
    calls = []

    def failing_once(self: lean.LeanServer, sock: socket.socket, address: object) -> lean.LeanAssociation:
        calls.append(address)
        if len(calls) == 1:
            raise RuntimeError("can't start new thread")
        return real(self, sock, address)

    monkeypatch.setattr(lean.LeanServer, "_start", failing_once)
    s = socket.create_connection((HOST, lean_node.port), timeout=10)
    assert _closed_within(s, 5)
    s.close()
    from dicom_node import echo

    assert echo(HOST, lean_node.port, "PRIORWATCH") == 0
    assert len(calls) == 2
