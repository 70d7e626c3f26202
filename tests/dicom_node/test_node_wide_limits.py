"""Association limits hold for the whole node, not per receiving process: the node's processes
share the listening socket and one slot table (`dicom_node.assoc_slots`), and a receiver killed
with -9 frees its slots (the kernel drops its flocks).

Real processes throughout: `python -m dicom_node` with an extra receiving process, pynetdicom
requestors. Which process accepts a connection is chosen by stopping the other one (SIGSTOP):
a stopped process does not accept, so the running one takes the connection from the shared
backlog.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node import StorageNode, send_files
from dicom_node.assoc_slots import FOLDER, NodeSlots
from priorwatch.settings import Settings

from .conftest import CT, StudyMaker, make_settings, wait_for
from .test_node_process import _start, _stop
from .test_receivers import _receivers_of

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
LOCAL_LIMIT = (2, 3, 2)  # A-ASSOCIATE-RJ: transient, service provider, local limit exceeded


def _associate(settings: Settings, calling: str = "MODALITY") -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = 20
    return ae.associate(HOST, settings.dicom_port, ae_title=settings.ae_title)


def _reject(assoc: Any) -> tuple[int, int, int]:
    rj = assoc.acceptor.primitive
    return (rj.result, rj.result_source, rj.diagnostic)


def _in_use(settings: Settings) -> int:
    """Slots held node-wide, read from a third process (this one)."""
    slots = NodeSlots(settings.data_dir / FOLDER, settings.dicom_max_associations)
    try:
        return slots.in_use()
    finally:
        slots.close()


def _pause(pid: int) -> None:
    """SIGSTOP, and wait until every thread of it is stopped (a signal is not instantaneous)."""
    os.kill(pid, signal.SIGSTOP)
    assert wait_for(lambda: all(_state_of_task(pid, t) == "T" for t in os.listdir(f"/proc/{pid}/task")), 10)


def _state_of_task(pid: int, tid: str) -> str:
    try:
        return Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "T"  # a thread that ended is not running


@pytest.fixture
def node_and_receiver(tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen[str], int]]:
    settings = make_settings(tmp_path, receive_processes=2, dicom_max_associations=1)
    node = _start(settings)
    try:
        [receiver] = _receivers_of(node.pid)
        yield settings, node, receiver
    finally:
        for pid in (node.pid, *_receivers_of(node.pid)):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        _stop(node)


def test_a_second_receiving_process_refuses_over_the_node_wide_limit_and_a_killed_ones_slots_free(
        node_and_receiver: tuple[Settings, subprocess.Popen[str], int]) -> None:
    settings, node, receiver = node_and_receiver
    held = refused = again = None
    assert wait_for(lambda: _in_use(settings) == 0, 10)  # the start-up echo's slot is back
    try:
        _pause(node.pid)  # the receiver takes the first association
        held = _associate(settings)
        assert held.is_established
        os.kill(node.pid, signal.SIGCONT)
        assert _in_use(settings) == 1

        _pause(receiver)  # the node's own process takes the next: it holds none itself
        refused = _associate(settings)
        assert (refused.is_rejected, refused.is_established) == (True, False)
        assert _reject(refused) == LOCAL_LIMIT

        os.kill(receiver, signal.SIGKILL)  # a receiver dies holding a slot
        assert wait_for(lambda: _in_use(settings) == 0, 10)
        again = _associate(settings)
        assert again.is_established
    finally:
        for a in (held, refused, again):
            if a is not None and a.is_established:
                a.release()
    node_log = (settings.data_dir / "node.log").read_text()
    assert "association refused: 1 associations open across the node" in node_log


# A process that takes node-wide slots, prints them, and waits to be killed.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dicom_node.assoc_slots import NodeSlots
    slots = NodeSlots(Path(sys.argv[1]), int(sys.argv[2]))
    print(*[slots.acquire(peer, int(sys.argv[2]), 1) for peer in sys.argv[3:]], flush=True)
    time.sleep(300)
""")


@pytest.fixture
def holders(child_processes: list[subprocess.Popen[str]]) -> list[subprocess.Popen[str]]:
    return child_processes


def _holder(folder: Path, size: int, peers: list[str], holders: list[subprocess.Popen[str]]) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(size), *peers], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    holders.append(proc)
    assert proc.stdout is not None
    return proc.stdout.readline().split()


def test_slots_are_shared_across_processes_total_and_per_peer(tmp_path: Path,
                                                              holders: list[subprocess.Popen[str]]) -> None:
    folder = tmp_path / FOLDER
    assert _holder(folder, 3, ["10.0.0.1", "10.0.0.2"], holders) == ["0", "1"]
    here = NodeSlots(folder, 3)
    assert here.acquire("10.0.0.1", 3, 1) == "peer"  # that peer already holds one, in the other process
    assert here.acquire("10.0.0.3", 3, 1) == 2
    assert here.acquire("10.0.0.4", 3, 1) == "total"
    here.release(2)
    assert here.acquire("10.0.0.4", 3, 1) == 2
    here.close()


def test_a_killed_holders_slots_are_free_again(tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    folder = tmp_path / FOLDER
    assert _holder(folder, 2, ["10.0.0.1", "10.0.0.2"], holders) == ["0", "1"]
    here = NodeSlots(folder, 2)
    assert (here.in_use(), here.acquire("10.0.0.3", 2, 1)) == (2, "total")
    holders[0].send_signal(signal.SIGKILL)
    holders[0].wait()
    assert here.in_use() == 0
    assert here.acquire("10.0.0.1", 2, 1) == 0  # its peer's slot too
    here.close()


def test_every_way_an_association_ends_gives_its_slot_back(tmp_path: Path, maker: StudyMaker) -> None:
    """Released, aborted, rejected after the guard (calling AE not allowed): none keeps a slot."""
    settings = make_settings(tmp_path, receive_processes=2, dicom_max_associations=4,
                             allowed_calling_aes=["MODALITY"])
    with StorageNode(settings):
        assert send_files(maker.study(2, CT), HOST, settings.dicom_port, settings.ae_title,
                          calling_ae="MODALITY") == [0, 0]
        aborted = _associate(settings)
        assert aborted.is_established
        aborted.abort()
        stranger = _associate(settings, calling="STRANGER")
        assert stranger.is_rejected
        assert wait_for(lambda: _in_use(settings) == 0, 10)
        held = [_associate(settings) for _ in range(4)]  # all four usable again, across both processes
        try:
            assert [a.is_established for a in held] == [True] * 4
            assert _reject(_associate(settings)) == LOCAL_LIMIT
        finally:
            for a in held:
                a.release()
