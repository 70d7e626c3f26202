"""The node as its own process (`python -m dicom_node`): killed mid-study it loses nothing;
on a full disk it refuses with 0xA700 and keeps serving."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE
from sqlmodel import select

from dicom_node import echo, send_files, send_files_detailed, statuses
from dicom_node.index import idempotency_key
from priorwatch.db import session_scope
from priorwatch.models import Instance, Job, Study
from priorwatch.settings import Settings, as_env

from .conftest import CR, CT, StudyMaker, broker_messages, make_settings, wait_for

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


def _start(settings: Settings, wrapper: list[str] | None = None, preexec=None) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, **as_env(settings), "PYTHONPATH": str(REPO)}
    env.pop("PRIORWATCH_CONFIG", None)
    cmd = [*(wrapper or []), sys.executable, "-m", "dicom_node"]
    log = open(settings.data_dir / "node.log", "a")
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=preexec)
    ok = wait_for(lambda: proc.poll() is not None or echo(HOST, settings.dicom_port, settings.ae_title, timeout=1) == 0, 20, 0.1)
    if proc.poll() is not None or not ok:
        proc.kill()
        raise RuntimeError("node did not start: " + (settings.data_dir / "node.log").read_text()[-3000:])
    return proc


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_sigterm_stops_node(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    proc = _start(settings)
    _stop(proc)
    assert proc.returncode == 0


def test_restart_mid_study_loses_nothing(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    files = maker.study(6, CT)
    first = files[:3]
    proc = _start(settings)
    try:
        ae = AE(ae_title="MODALITY")
        meta = dcmread(files[0], stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
        assoc = ae.associate(HOST, settings.dicom_port, ae_title=settings.ae_title)
        assert assoc.is_established
        for p in first:
            assert assoc.send_c_store(p).Status == 0
        proc.send_signal(signal.SIGKILL)  # crash mid-study, association still open
        proc.wait(10)
        assoc.abort()
    finally:
        _stop(proc, signal.SIGKILL)
    proc = _start(settings)
    try:
        # Everything answered with success before the crash is on disk and indexed.
        with session_scope(settings) as s:
            rows = list(s.exec(select(Instance)))
        assert len(rows) == 3 and all(Path(r.path).is_file() for r in rows)
        # The sender retries the whole study (as senders do) plus the rest, then releases.
        assert send_files(files, HOST, settings.dicom_port, settings.ae_title, calling_ae="MODALITY") == [0] * 6
        assert wait_for(lambda: broker_messages(settings), 10)
        time.sleep(0.8)
        with session_scope(settings) as s:
            jobs = list(s.exec(select(Job)))
            study = s.exec(select(Study)).one()
            rows = list(s.exec(select(Instance)))
    finally:
        _stop(proc)
    assert proc.returncode == 0
    sops = [dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    assert len(jobs) == 1 and study.n_instances == 6 and study.version == 1 and study.state == "queued"
    assert jobs[0].idempotency_key == idempotency_key(study.study_uid, sops)
    assert sorted(r.sop_instance_uid for r in rows) == sorted(sops)
    assert len(broker_messages(settings)) == 1
    assert not list(settings.spool_dir.rglob("*.part"))


def _small_fs_wrapper(spool: Path, size: str) -> tuple[list[str] | None, object]:
    """Run the node with its spool on a small tmpfs in a private mount namespace: a real ENOSPC.
    Where user namespaces are not allowed, fall back to RLIMIT_FSIZE: a real EFBIG from write()."""
    unshare = shutil.which("unshare")
    if unshare:
        probe = subprocess.run([unshare, "-rm", "--propagation", "private", "sh", "-c",
                                f"mount -t tmpfs -o size={size} tmpfs '{spool}'"], capture_output=True)
        if probe.returncode == 0:
            script = f'mount -t tmpfs -o size={size} tmpfs "{spool}" && exec "$@"'
            return [unshare, "-rm", "--propagation", "private", "sh", "-c", script, "sh"], None

    def limit() -> None:  # pragma: no cover - fallback path
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, 2 * 1024 * 1024))

    return None, limit


def test_disk_full_gets_a700_and_node_keeps_serving(tmp_path: Path, maker: StudyMaker) -> None:
    settings = make_settings(tmp_path, quiet_period_s={"default": 60.0})
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    wrapper, preexec = _small_fs_wrapper(settings.spool_dir, "2m")
    # The database is created before the spool fills (outside the small spool file system).
    from priorwatch.db import init_db

    init_db(settings)
    big = maker.study(2, CR)  # 7.2 MB each: cannot fit in 2 MB
    small = maker.study(3, CT)  # 39 kB each
    proc = _start(settings, wrapper, preexec)
    try:
        results = send_files_detailed(small[:1] + big + small[1:], HOST, settings.dicom_port, settings.ae_title)
        assert [s for s, _ in results] == [0, statuses.OUT_OF_RESOURCES, statuses.OUT_OF_RESOURCES, 0, 0]
        assert "out of resources" in results[1][1]
        assert echo(HOST, settings.dicom_port, settings.ae_title) == 0
        with session_scope(settings) as s:
            rows = list(s.exec(select(Instance)))
        small_sops = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in small}
        assert {r.sop_instance_uid for r in rows} == small_sops  # refused ones are not indexed
        # Space comes back (here: a sender retries to a node with room): nothing was lost.
    finally:
        _stop(proc)
    log = (settings.data_dir / "node.log").read_text()
    assert "cannot write instance" in log
    assert ("No space left on device" in log) or ("File too large" in log)
    assert "Test^Patient" not in log and "PW-TEST-1" not in log  # no PHI in the log
    proc = _start(settings)  # a node with room takes the refused instances on retry
    try:
        assert send_files(big, HOST, settings.dicom_port, settings.ae_title) == [0, 0]
    finally:
        _stop(proc)
