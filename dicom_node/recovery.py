"""After an unclean stop, index again the spool files whose index rows were lost.

The Storage SCP answers Success once the instance's spool file is fdatasync'd and its index row
committed, without an fsync of that commit (`Ingest(sync_index=False)`, SQLite only; see
`dicom_node.ingest` for exactly what is durable then). A power loss can therefore roll back the
last index commits while their files are on disk. The file holds everything its row is made of,
so the node's start indexes every spool file that has no row, before it accepts an association.

When to look: the node writes `<data dir>/node.clean` (durably) when it stops cleanly, after the
index is synced to disk, and removes it (durably) when it starts. Missing at start means the
last run did not end that way (a kill, a crash, a power loss, or a first start): the spool's
folders are listed (names only; a stat for the few without a row) and compared with the
index's file names. Measured cost: in proportion to the spool's size, paid only then.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path

from sqlalchemy.engine import Engine

from priorwatch.settings import Settings

from dicom_node.index import indexed_file_names
from dicom_node.ingest import Ingest
from dicom_node.spool import fsync_dir

log = logging.getLogger(__name__)

MARKER = "node.clean"
# A file younger than this when the scan starts is left alone: another writer (a worker's or
# the HTTP store's Ingest, which sync their own commits) may be between its write and its
# index. A power loss and the restart after it take longer than this.
MIN_AGE_S = 5.0


def marker(settings: Settings) -> Path:
    return Path(settings.data_dir) / MARKER


def on_start(ingest: Ingest, settings: Settings) -> Counter[str]:
    """Index what an unclean stop left unindexed (nothing after a clean stop), then remove
    the clean-stop marker durably, so that a stop from now on without `on_stop` is unclean."""
    found: Counter[str] = Counter()
    mark = marker(settings)
    if not mark.exists():
        found = reindex(ingest, settings.spool_dir)
        if found["adopted"] or found["refused"]:
            log.warning("unclean stop: %d spooled instances indexed again (%d duplicates removed, %d refused)",
                        found["adopted"], found["duplicates"], found["refused"])
    mark.unlink(missing_ok=True)
    fsync_dir(mark.parent)
    return found


def on_stop(engine: Engine, settings: Settings) -> None:
    """Sync the index to disk, then write the clean-stop marker durably. Call only when no
    receiver of this node can commit any more."""
    sync_index(engine)
    mark = marker(settings)
    fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(mark.parent)


def sync_index(engine: Engine) -> None:
    """fsync a SQLite index's database and WAL files: every commit so far, synced or not, is
    on disk after this (SQLite appends commits to the WAL in order). Other databases: nothing
    to do (their commits are synchronous)."""
    if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    for name in (engine.url.database, f"{engine.url.database}-wal"):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def reindex(ingest: Ingest, spool_dir: Path) -> Counter[str]:
    """Index every spool file without an index row and at least `MIN_AGE_S` old."""
    started = time.time()
    held = indexed_file_names(ingest.engine)
    found: Counter[str] = Counter()
    if not spool_dir.is_dir():
        return found
    for folder in sorted(spool_dir.iterdir()):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.endswith(".dcm") and e.name not in held]
        for name in names:
            path = folder / name
            try:
                if path.stat().st_mtime > started - MIN_AGE_S:
                    found["too_young"] += 1
                    continue
            except FileNotFoundError:
                continue
            result = ingest.adopt(path)
            found["duplicates" if result.duplicate else "adopted" if result.status == 0 else "refused"] += 1
    return found
