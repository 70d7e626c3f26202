"""A node that cannot be starved (issue 14): stalled headers, partial PDUs, huge length claims,
empty association requests and association limits. Timings are scaled down by settings
(PDU deadline 1.5 s); DCMTK's storescu is the good sender that must still get through."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node import StorageNode
from priorwatch.settings import Settings
from tests.conftest import require_binary

from .conftest import CT, StudyMaker, make_settings, wait_for

HOST = "127.0.0.1"
PDU_TIMEOUT_S = 1.5
STORESCU = "/usr/bin/storescu"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[StorageNode]:
    settings = make_settings(tmp_path, dicom_pdu_timeout_s=PDU_TIMEOUT_S, dicom_artim_timeout_s=3.0,
                             dicom_max_associations=4, dicom_max_associations_per_peer=2)
    node = StorageNode(settings).start()
    try:
        yield node
    finally:
        node.stop()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _connect(port: int, payload: bytes = b"") -> socket.socket:
    s = socket.create_connection((HOST, port), timeout=10)
    if payload:
        s.sendall(payload)
    return s


def _closed_by_peer(s: socket.socket, within: float) -> bytes | None:
    """What the node sent before closing `s`, or None if it is still open after `within` s."""
    s.settimeout(within)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return got
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return got


def _storescu(settings: Settings, path: Path, port: int) -> tuple[int, float]:
    require_binary(STORESCU)
    t0 = time.monotonic()
    proc = subprocess.run([STORESCU, "-aet", "GOODSCU", "-aec", settings.ae_title, HOST, str(port), str(path)],
                          env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=30)
    return proc.returncode, time.monotonic() - t0


def _associate_rq_without_items() -> bytes:
    body = struct.pack(">HH", 1, 0) + b"PRIORWATCH".ljust(16) + b"EMPTYSCU".ljust(16) + bytes(32)
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def test_forty_stalled_headers_do_not_keep_out_a_good_study(guarded: StorageNode, maker: StudyMaker) -> None:
    stalled = [_connect(guarded.port, b"\x01\x00\x00\x00\x00\xc8") for _ in range(40)]
    try:
        time.sleep(0.3)  # every stalled connection is in the node's hands
        [path] = maker.study(1, CT)
        rc, took = _storescu(guarded.settings, path, guarded.port)
        assert rc == 0 and took < 5.0, f"storescu rc={rc} after {took:.2f}s"
        assert guarded.counts["stored"] == 1
        # None holds on: each is let go by its PDU deadline (or evicted sooner, over the pending cap).
        assert all(_closed_by_peer(s, PDU_TIMEOUT_S + 2.0) is not None for s in stalled)
    finally:
        for s in stalled:
            s.close()


def test_connections_over_the_pending_cap_evict_the_oldest(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, dicom_pdu_timeout_s=60.0, dicom_artim_timeout_s=60.0)
    with StorageNode(settings) as node:
        cap = node.guard.limits.max_pending_per_peer
        stalled = [_connect(node.port, b"\x01\x00") for _ in range(cap + 4)]
        try:
            # Four (the oldest the node saw) go at once, though their deadlines are a minute away.
            assert wait_for(lambda: node.guard.evicted == 4, 5.0)
            time.sleep(0.3)
            closed = sum(_closed_by_peer(s, 0.05) is not None for s in stalled)
            assert closed == 4
        finally:
            for s in stalled:
                s.close()


def test_partial_pdu_that_stalls_is_dropped_at_its_deadline(guarded: StorageNode) -> None:
    s = _connect(guarded.port, b"\x01\x00\x00\x00\x00\xc8" + b"\x00\x01\x00\x00")  # claims 200, sends 4
    try:
        t0 = time.monotonic()
        assert _closed_by_peer(s, PDU_TIMEOUT_S + 3.0) is not None
        assert PDU_TIMEOUT_S - 0.2 <= time.monotonic() - t0 <= PDU_TIMEOUT_S + 2.0
    finally:
        s.close()


def test_gigabyte_length_claim_is_aborted_at_once_without_memory(guarded: StorageNode, maker: StudyMaker) -> None:
    before = _rss_mb()
    socks = []
    try:
        for pdu_type in (0x01, 0x04):  # an association request, and P-DATA before any association
            s = _connect(guarded.port, struct.pack(">BBL", pdu_type, 0, 1 << 30) + bytes(64 << 10))
            socks.append(s)
            t0 = time.monotonic()
            got = _closed_by_peer(s, 2.0)
            assert got is not None and time.monotonic() - t0 < 1.0
            assert got[:1] == b"\x07"  # A-ABORT, then the connection closes
        [path] = maker.study(1, CT)
        rc, took = _storescu(guarded.settings, path, guarded.port)
        assert rc == 0 and took < 5.0
        assert _rss_mb() - before < 64
    finally:
        for s in socks:
            s.close()


def test_pdata_longer_than_negotiated_aborts_the_association(guarded: StorageNode) -> None:
    ae = AE(ae_title="BIGPDU")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, guarded.port, ae_title=guarded.settings.ae_title)
    assert assoc.is_established
    limit = assoc.acceptor.maximum_length
    assert limit == guarded.settings.dicom_max_pdu_bytes
    raw = assoc.dul.socket.socket  # type: ignore[union-attr]
    raw.sendall(struct.pack(">BBL", 0x04, 0, limit + 1) + bytes(1024))
    deadline = time.monotonic() + 3
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.02)
    assert assoc.is_aborted


def test_association_request_without_contexts_is_rejected(guarded: StorageNode) -> None:
    s = _connect(guarded.port, _associate_rq_without_items())
    try:
        got = _closed_by_peer(s, 3.0)
        assert got is not None and got[:1] == b"\x03", got  # A-ASSOCIATE-RJ
        result, source, reason = got[7], got[8], got[9]
        assert (result, source, reason) == (1, 1, 1)  # permanent, service user, no reason given
    finally:
        s.close()


def _assoc(port: int, ae_title: str) -> object:
    ae = AE(ae_title="LIMITS")
    ae.add_requested_context(Verification)
    return ae.associate(HOST, port, ae_title=ae_title)


def test_association_limits_count_established_associations_per_peer(guarded: StorageNode) -> None:
    title = guarded.settings.ae_title
    held = [_assoc(guarded.port, title) for _ in range(2)]  # per-peer cap is 2
    try:
        assert all(a.is_established for a in held)  # type: ignore[attr-defined]
        third = _assoc(guarded.port, title)
        assert third.is_rejected  # type: ignore[attr-defined]
        rj = third.acceptor.primitive  # type: ignore[attr-defined]
        assert (rj.result, rj.result_source, rj.diagnostic) == (2, 3, 2)  # transient, local limit exceeded
        # Stalled connections from the same peer do not count: they never negotiated.
        stalled = [_connect(guarded.port, b"\x01\x00") for _ in range(5)]
        held[0].release()  # type: ignore[attr-defined]
        time.sleep(0.2)
        again = _assoc(guarded.port, title)
        assert again.is_established  # type: ignore[attr-defined]
        again.release()  # type: ignore[attr-defined]
        for s in stalled:
            s.close()
    finally:
        for a in held:
            if a.is_established:  # type: ignore[attr-defined]
                a.release()  # type: ignore[attr-defined]
