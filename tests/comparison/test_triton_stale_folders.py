"""A local Triton's private folder (`/tmp/priorwatch-triton-*`: backend symlinks, the served
models' links) outlives a start killed with -9; the next start removes the ones whose owner
process is gone, and never one of a live process.

The owners here are real processes (a Python child making the folder as `LocalTriton.start`
does, and one real tritonserver start), killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from comparison import LocalTriton
from comparison.triton_server import FOLDER_PREFIX, OWNER_FILE, TritonStartError, remove_stale_folders

from ..conftest import free_port

REPO = Path(__file__).resolve().parents[2]

# A child that makes a folder the way LocalTriton.start does (same prefix, same owner record),
# says where, and waits to be killed.
MAKE_FOLDER = """
import sys, tempfile, time
from pathlib import Path
from comparison.triton_server import FOLDER_PREFIX, _write_owner
folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=sys.argv[1]))
_write_owner(folder)
print(folder, flush=True)
time.sleep(300)
"""


@pytest.fixture
def owners(child_processes: list[subprocess.Popen[str]]) -> list[subprocess.Popen[str]]:
    return child_processes


def _folder_of_a_child(root: Path, owners: list[subprocess.Popen[str]], *extra: str) -> tuple[Path, subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", MAKE_FOLDER, str(root), *extra], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    owners.append(proc)
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    assert folder.parent == root
    return folder, proc


def _kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_owners_folder_is_removed_a_live_ones_kept(tmp_path: Path, owners: list[subprocess.Popen[str]]) -> None:
    dead, dead_owner = _folder_of_a_child(tmp_path, owners)
    live, _ = _folder_of_a_child(tmp_path, owners)
    _kill9(dead_owner)

    removed = remove_stale_folders(tmp_path)

    assert removed == [dead]
    assert not dead.exists()
    assert (live / OWNER_FILE).is_file()


def test_a_folder_a_live_process_still_names_is_kept(tmp_path: Path, owners: list[subprocess.Popen[str]]) -> None:
    """Its owner is gone but a server it started lives on (a plain LocalTriton's tritonserver
    runs in its own session and survives its owner): that server still uses the folder."""
    folder, owner = _folder_of_a_child(tmp_path, owners)
    _kill9(owner)
    user = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", f"--backend-directory={folder}/backends"],
                            text=True)
    owners.append(user)  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while str(folder).encode() not in Path(f"/proc/{user.pid}/cmdline").read_bytes():  # until it has exec'd
        assert time.monotonic() < deadline
        time.sleep(0.01)

    assert remove_stale_folders(tmp_path) == []
    assert folder.is_dir()
    _kill9(user)  # type: ignore[arg-type]
    assert remove_stale_folders(tmp_path) == [folder]


def test_a_folder_without_an_owner_record_is_left_alone(tmp_path: Path) -> None:
    """Made by an older version, or by a start that has not written its record yet."""
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=tmp_path))
    assert remove_stale_folders(tmp_path) == []
    assert folder.is_dir()


def test_a_reused_pid_does_not_keep_a_stale_folder(tmp_path: Path) -> None:
    """The record names a process by pid and start time: a live process with that pid but
    another start time (the pid reused) is not the owner."""
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=tmp_path))
    (folder / OWNER_FILE).write_text(f"{os.getpid()} 1\n")  # this live pid, a start time it never had
    assert remove_stale_folders(tmp_path) == [folder]


def _session_members(session: int) -> list[int]:
    """Live (not zombie) processes of a session."""
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if os.getsid(int(entry)) == session and state != "Z":
                out.append(int(entry))
        except OSError:
            continue
    return out


def _shm_regions_of(session: int) -> set[str]:
    """The Python backend's shared-memory regions named by the processes of a server's session."""
    out = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(entry)) != session:
                continue
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        out |= {a.decode() for a in args if a.startswith(b"triton_python_backend_shm_region_")}
    return out


@pytest.mark.triton
def test_the_next_start_removes_what_a_killed_start_left(tmp_path: Path, owners: list[subprocess.Popen[str]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that started a real tritonserver is killed with -9 (its server stopped, as
    serve's orphan guard does); the next LocalTriton.start removes its folder."""
    root = tmp_path / "tmp"
    root.mkdir()
    script = (
        "import sys, tempfile\n"
        "tempfile.tempdir = sys.argv[1]\n"
        "from comparison import LocalTriton\n"
        f"t = LocalTriton(grpc_port={free_port()}, http_port={free_port()}, metrics_port=None).start()\n"
        "print(t.pid, flush=True)\n"
        "import time; time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(root)], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    owners.append(proc)
    assert proc.stdout is not None
    server = int(proc.stdout.readline())
    [left] = list(root.glob(FOLDER_PREFIX + "*"))
    regions = _shm_regions_of(server)
    _kill9(proc)
    os.killpg(server, signal.SIGKILL)  # its session: the server and its backend stub
    deadline = time.monotonic() + 30
    while _session_members(server) and time.monotonic() < deadline:  # SIGKILL is not instantaneous
        time.sleep(0.05)
    assert _session_members(server) == []
    for name in regions:  # a server we crashed: its shared memory is ours to clean
        Path("/dev/shm", name).unlink(missing_ok=True)
    assert left.is_dir()

    monkeypatch.setattr(tempfile, "tempdir", str(root))
    with pytest.raises(TritonStartError):  # no model here: it stops after the clean-up, before a server
        LocalTriton(model_repository=tmp_path / "no-models").start()

    assert not left.exists()
