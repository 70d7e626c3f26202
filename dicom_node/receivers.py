"""Several receiving processes on one listening socket, for parallel associations.

One Python process handles its associations under one GIL: with four modalities sending at
once it is bound to one core. The node's process makes the listening socket; each extra
receiver is `python -m dicom_node --receiver-fd N`, inheriting that socket, so the kernel
hands each new connection to whichever process accepts first (a busy process accepts later,
which spreads the load). Receivers only store and index (one `WriteLock` across processes);
completion and job hand-off stay in the node's own process. A receiver exits when its
parent's pipe closes, so a killed node leaves none behind.
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from priorwatch.settings import Settings, as_env

from dicom_node import assoc_slots
from dicom_node.guard import guard_of

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def listen(host: str, port: int, backlog: int = 64) -> socket.socket:
    """A non-blocking listening TCP socket: a process that loses the race for a connection
    gets EAGAIN from accept() instead of blocking its acceptor thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class LoadBoard:
    """Open associations per receiving process, in a small file all of them map: process
    `slot` writes only its own counter and reads everyone's."""

    def __init__(self, path: Path, slot: int, slots: int) -> None:
        size = 8 * max(slots, 1)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._counts = memoryview(self._map).cast("q")
        self.path = path
        self.slot = slot
        self._counts[slot] = 0

    def set(self, n: int) -> None:
        self._counts[self.slot] = n

    def least_loaded(self) -> bool:
        mine = self._counts[self.slot]
        return all(mine <= other for other in self._counts)


class SharedListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server on an existing listening socket.

    Every process sharing the socket is woken by a new connection; with a `LoadBoard`, one that
    holds more open associations than another lets the less busy one take it, for at most
    `DEFER_S` (then it accepts anyway: a stuck peer must not stall a sender).

    With a `LoadBoard` (the node's data dir) the AE's guard counts its association limits
    node-wide, in `dicom_node.assoc_slots` beside the board: every process on the socket shares them.
    """

    DEFER_S = 0.02

    def __init__(self, listener: socket.socket, *args: Any, board: LoadBoard | None = None, **kwargs: Any) -> None:
        self._listener = listener
        self._board = board
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()  # associations accepted here
        self._pending = 0  # accepted, association not made yet
        self._live_lock = threading.Lock()
        self._deferring_since = 0.0
        guard = guard_of(args[0]) if args else None
        self._slots: assoc_slots.NodeSlots | None = None
        if board is not None and guard is not None:
            self._slots = assoc_slots.NodeSlots(board.path.parent / assoc_slots.FOLDER, guard.limits.max_associations)
            guard.share(self._slots)
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self.socket is not None and self.socket is not self._listener:
            self.socket.close()
        self.socket = self._listener
        self.server_address = self._listener.getsockname()

    def server_activate(self) -> None:
        pass  # already listening

    def server_close(self) -> None:
        super().server_close()
        if self._slots is not None:
            self._slots.close()  # its slot files' locks go with it

    def track(self, assoc: Any) -> None:
        """Count `assoc` (from EVT_CONN_OPEN) until its thread ends."""
        with self._live_lock:
            self._live.add(assoc)
            self._pending = max(0, self._pending - 1)
            self._publish()

    def _publish(self) -> None:
        if self._board is not None:
            live = sum(1 for a in list(self._live) if a.ident is None or a.is_alive())
            self._board.set(live + self._pending)

    def get_request(self) -> tuple[socket.socket, Any]:
        if self._board is not None:
            with self._live_lock:
                self._publish()
            if not self._board.least_loaded():
                now = time.monotonic()
                if not self._deferring_since:
                    self._deferring_since = now
                if now - self._deferring_since < self.DEFER_S:
                    time.sleep(0.001)
                    raise BlockingIOError("another receiver is less busy")
        self._deferring_since = 0.0
        request, address = super().get_request()  # EAGAIN: another process took it
        with self._live_lock:
            self._pending += 1
            self._publish()
        return request, address


def board_path(settings: Settings) -> Path:
    return settings.data_dir / "receivers.load"


def spawn(settings: Settings, listener: socket.socket, n: int) -> list[subprocess.Popen[bytes]]:
    """Start `n` receiver processes sharing `listener`, in LoadBoard slots 1..n."""
    env = {**os.environ, **{k: str(v) for k, v in as_env(settings).items()}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.pop("PRIORWATCH_CONFIG", None)  # as_env carries every resolved setting
    fd = listener.fileno()
    procs = []
    for i in range(n):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dicom_node", "--receiver-fd", str(fd), "--slot", str(i + 1), "--slots", str(n + 1)],
            env=env, pass_fds=(fd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        ))
    ready = sum(_wait_ready(p) for p in procs)
    log.info("%d of %d extra receiving processes ready", ready, n)
    return procs


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Wait for the receiver's "READY" line, so that the node reports ready only when every
    receiver accepts; one that fails leaves the others (and the node) serving."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            log.warning("a receiving process did not start (exit code %s)", proc.poll())
            return False
        readable, _, _ = select.select([fd], [], [], min(left, 0.5))
        if readable:
            chunk = os.read(fd, 256)
            if not chunk:
                continue
            buf += chunk
    return buf.startswith(b"READY")


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdin is not None:
            p.stdin.close()


def auto_count() -> int:
    """One receiving process per core, at most four (beyond that SQLite's one writer binds)."""
    return max(1, min(os.cpu_count() or 1, 4))
