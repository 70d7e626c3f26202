"""Several receiving processes on the node's one port: parallel associations spread over them,
the index stays exact, and none outlives the node."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE
from sqlmodel import select

from dicom_node import StorageNode, send_files
from priorwatch.db import session_scope
from priorwatch.models import Instance, Job, Study

from .conftest import StudyMaker, make_settings, wait_for
from .test_node_process import _start, _stop

HOST = "127.0.0.1"


def _receivers_of(pid: int) -> list[int]:
    """Child processes of `pid` running `dicom_node --receiver-fd`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"--receiver-fd" in cmdline:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_parallel_associations_spread_over_receiver_processes(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, receive_processes=2, quiet_period_s={"default": 60.0})
    studies = [maker.study(6, patient_id=f"PW-R{i}") for i in range(4)]
    results: dict[int, list[int]] = {}
    with StorageNode(settings) as node:
        assert len(_receivers_of(os.getpid())) == 1

        def send(i: int) -> None:
            results[i] = send_files(studies[i], HOST, node.port, settings.ae_title, calling_ae=f"MOD{i}")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # Completion runs in the node's process, for studies the other receiver indexed too.
        assert wait_for(lambda: _n_jobs(settings) == 4, 15)
        in_this_process = node.counts["stored"]
    assert all(results[i] == [0] * 6 for i in range(4))
    with session_scope(settings) as s:
        assert len(s.exec(select(Instance)).all()) == 24
        assert sorted(st.n_instances for st in s.exec(select(Study))) == [6, 6, 6, 6]
    assert in_this_process < 24  # the other receiving process took some associations
    assert _receivers_of(os.getpid()) == []  # stopped with the node


def _n_jobs(settings) -> int:  # type: ignore[no-untyped-def]
    with session_scope(settings) as s:
        return len(s.exec(select(Job)).all())


def test_receivers_end_with_a_killed_node_and_nothing_is_lost(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, receive_processes=2, quiet_period_s={"default": 60.0})
    files = maker.study(6, patient_id="PW-KILL")
    proc = _start(settings)
    try:
        receivers = _receivers_of(proc.pid)
        assert len(receivers) == 1
        # Half the study on an association still open when the node dies (no release).
        ae = AE(ae_title="MODALITY")
        meta = dcmread(files[0], stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
        assoc = ae.associate(HOST, settings.dicom_port, ae_title=settings.ae_title)
        assert [assoc.send_c_store(f).Status for f in files[:3]] == [0, 0, 0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_for(lambda: not any(_alive(p) for p in receivers), 15)
        assoc.abort()
    finally:
        _stop(proc)
    proc = _start(settings)  # the port is free again: no receiver kept it
    try:
        assert send_files(files, HOST, settings.dicom_port, settings.ae_title) == [0] * 6
        assert wait_for(lambda: _n_jobs(settings) == 1, 15)
    finally:
        _stop(proc)
    with session_scope(settings) as s:
        study = s.exec(select(Study)).one()
        assert study.n_instances == 6 and study.version == 1
        paths = {Path(i.path) for i in s.exec(select(Instance))}
    assert all(p.is_file() for p in paths) and len(paths) == 6
    assert sorted(settings.spool_dir.rglob("*.dcm")) == sorted(paths)  # re-sent copies removed
