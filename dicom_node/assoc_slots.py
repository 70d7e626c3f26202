"""Node-wide association slots, shared by every receiving process of one node (one data dir).

The node's receiving processes (`dicom_node.receivers`) share one listening socket, so an
association limit counted inside each process would let N processes hold N times the limit.
Here each established (or negotiating, past the guard) association holds one slot:

- `<folder>/slot-<i>`: a file per slot, held with `flock(LOCK_EX)` by the process whose
  association uses it. The kernel drops a flock when its holder dies, kill -9 included, so a
  killed receiver's slots free themselves: nothing to expire, no timer, no pid that can be
  reused. (A shared-memory semaphore would keep a killed holder's count for ever; a pid table
  would need pid-reuse checks and a sweeper.)
- `<folder>/table`: one 64-byte record per slot (in use, peer address), mapped by every process;
  read and written under `flock` on the table file, so the check "under the total and the
  per-peer limit" and the taking of a slot are one step node-wide. A record whose slot file is
  not locked belongs to a process that died: it is cleared when seen.

A slot is taken when the A-ASSOCIATE-RQ passes the guard and given back when the association is
released or aborted or its connection closes (whichever comes first; giving back twice is a
no-op). Cost: two flocks and a scan of the mapped table per association (tens of microseconds).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from pathlib import Path

RECORD = 64  # bytes per slot in the table: a use flag, then the peer address (IPv6 needs at most 45)
FOLDER = "assoc-slots"  # under the data dir


class NodeSlots:
    """Slots for `size` associations at once across the processes that open `folder`."""

    def __init__(self, folder: Path, size: int) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder = folder
        self._table_fd = os.open(folder / "table", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._table_fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._table_fd).st_size < RECORD * size:
                os.ftruncate(self._table_fd, RECORD * size)
            self.size = os.fstat(self._table_fd).st_size // RECORD  # a bigger table (an earlier setting) is kept
            self._map = mmap.mmap(self._table_fd, RECORD * self.size)
        finally:
            fcntl.flock(self._table_fd, fcntl.LOCK_UN)
        self._slot_fds: dict[int, int] = {}
        self._mine: dict[int, str] = {}  # slot -> peer, held by this process
        self._lock = threading.Lock()  # flock is per open file: threads of one process take turns here

    def acquire(self, peer: str, max_total: int, max_per_peer: int) -> int | str:
        """Take a slot for an association from `peer`: its number, or why not ("total" or
        "peer": that limit is reached node-wide)."""
        with self._lock:
            if self._map.closed:  # the node's server is closing: nothing more is accepted
                return "total"
            fcntl.flock(self._table_fd, fcntl.LOCK_EX)
            try:
                held, from_peer, free = self._census(peer)
                if held >= max_total or free is None:
                    return "total"
                if from_peer >= max_per_peer:
                    return "peer"
                fcntl.flock(self._slot_fd(free), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: nobody holds it
                self._write(free, peer)
                self._mine[free] = peer
                return free
            finally:
                fcntl.flock(self._table_fd, fcntl.LOCK_UN)

    def release(self, slot: int) -> None:
        """Give a slot back (a slot not held here is ignored)."""
        with self._lock:
            if self._mine.pop(slot, None) is None:
                return
            fcntl.flock(self._table_fd, fcntl.LOCK_EX)
            try:
                self._map[slot * RECORD] = 0
                fcntl.flock(self._slot_fd(slot), fcntl.LOCK_UN)
            finally:
                fcntl.flock(self._table_fd, fcntl.LOCK_UN)

    def in_use(self) -> int:
        """Slots held node-wide now (for tests and metrics)."""
        with self._lock:
            fcntl.flock(self._table_fd, fcntl.LOCK_EX)
            try:
                return self._census("")[0]
            finally:
                fcntl.flock(self._table_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Give back every slot held here and close the files (idempotent)."""
        with self._lock:
            if self._map.closed:
                return
            for slot in list(self._mine):
                self._map[slot * RECORD] = 0
            self._mine.clear()
            for fd in self._slot_fds.values():
                os.close(fd)  # drops this process's slot locks
            self._slot_fds.clear()
            self._map.close()
            os.close(self._table_fd)

    # -- under the table lock -----------------------------------------------------------------
    def _census(self, peer: str) -> tuple[int, int, int | None]:
        """(slots held, of them from `peer`, the first free slot); clears records of dead holders."""
        held = from_peer = 0
        free: int | None = None
        for i in range(self.size):
            if i in self._mine:
                held += 1
                from_peer += self._mine[i] == peer
                continue
            if self._map[i * RECORD] and self._held_elsewhere(i):
                held += 1
                from_peer += self._peer(i) == peer
                continue
            self._map[i * RECORD] = 0  # free, or its holder died (kill -9): its flock went with it
            if free is None:
                free = i
        return held, from_peer, free

    def _held_elsewhere(self, slot: int) -> bool:
        fd = self._slot_fd(slot)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    def _slot_fd(self, slot: int) -> int:
        fd = self._slot_fds.get(slot)
        if fd is None:
            fd = os.open(self.folder / f"slot-{slot}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._slot_fds[slot] = fd
        return fd

    def _write(self, slot: int, peer: str) -> None:
        raw = peer.encode("ascii", "replace")[: RECORD - 2]
        at = slot * RECORD
        self._map[at + 1:at + RECORD] = raw.ljust(RECORD - 1, b"\0")
        self._map[at] = 1

    def _peer(self, slot: int) -> str:
        at = slot * RECORD
        return self._map[at + 1:at + RECORD].rstrip(b"\0").decode("ascii", "replace")
