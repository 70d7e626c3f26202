"""Received images are patient data: every file the node spools or quarantines is 0600 and every
spool folder 0700 from its creation, whatever the umask (the mode is given at create, so a
permissive umask cannot widen it; run here under umask 0, the widest)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node import StorageNode, send_files, send_files_detailed, statuses
from priorwatch.settings import Settings

from .conftest import CT, StudyMaker, make_settings, wait_for
from .conftest import indexed_instances as _instances
from .conftest import indexed_studies as _studies
from .test_patient_identity import ALICE, BOB, _quarantine

HOST = "127.0.0.1"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_0() -> Iterator[None]:
    """The widest umask: a file created 0644 or 0640 by default would show it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_spooled_files_are_0600_and_spool_folders_0700(tmp_path: Path, maker: StudyMaker, umask_0: None) -> None:
    files = maker.study(3, CT)
    settings = make_settings(tmp_path)
    with StorageNode(settings) as node:
        assert send_files(files, HOST, node.port, settings.ae_title) == [0, 0, 0]
    stored = [Path(i.path) for i in _instances(settings)]
    assert len(stored) == 3
    assert {oct(_mode(p)) for p in stored} == {oct(0o600)}
    folders = [p for p in settings.spool_dir.iterdir() if p.is_dir()]
    assert len(folders) == 256
    assert {oct(_mode(p)) for p in [settings.spool_dir, *folders]} == {oct(0o700)}


def test_a_spool_folder_made_on_the_receive_path_is_0700(tmp_path: Path, maker: StudyMaker, umask_0: None) -> None:
    """A folder removed after start (or a worker's own ingest) is made again with the instance."""
    files = maker.study(1, CT)
    settings = make_settings(tmp_path)
    with StorageNode(settings) as node:
        sop = dcmread(files[0], stop_before_pixels=True).SOPInstanceUID
        from dicom_node.spool import new_instance_path

        folder = new_instance_path(settings.spool_dir, sop).parent
        folder.rmdir()
        assert send_files(files, HOST, node.port, settings.ae_title) == [0]
    [inst] = _instances(settings)
    assert Path(inst.path).parent == folder
    assert (oct(_mode(folder)), oct(_mode(Path(inst.path)))) == (oct(0o700), oct(0o600))


@pytest.fixture
def quarantine_on_tmpfs(tmp_path: Path) -> Iterator[Settings]:
    """A data dir whose quarantine folder is on another file system (/dev/shm, tmpfs), so the
    node must copy the file there instead of renaming it."""
    shm = Path(tempfile.mkdtemp(prefix="pw-quarantine-", dir="/dev/shm"))
    settings = make_settings(tmp_path)
    (settings.data_dir / "quarantine").symlink_to(shm, target_is_directory=True)
    try:
        yield settings
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_a_quarantined_file_copied_across_file_systems_is_0600(
        quarantine_on_tmpfs: Settings, maker: StudyMaker, umask_0: None) -> None:
    settings = quarantine_on_tmpfs
    alice = maker.study(1, CT, **ALICE)
    uid = dcmread(alice[0], stop_before_pixels=True).StudyInstanceUID
    with StorageNode(settings) as node:
        assert send_files(alice, HOST, node.port, settings.ae_title) == [0]
        assert wait_for(lambda: _studies(settings)[0].state == "queued", 10)
        [bob] = maker.study(1, CT, study_uid=uid, **BOB)
        [(status, _)] = send_files_detailed([bob], HOST, node.port, settings.ae_title)
    assert status == statuses.PATIENT_MISMATCH
    [q] = _quarantine(settings)
    kept = Path(q.path)
    assert os.stat(kept).st_dev != os.stat(settings.spool_dir).st_dev  # copied, not renamed
    assert kept.read_bytes()[-64:] == bob.read_bytes()[-64:]
    assert oct(_mode(kept)) == oct(0o600)
