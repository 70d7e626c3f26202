"""The embedded index's commits are durable before the node acknowledges an instance.

The node answers C-STORE Success after the file is fdatasync'd and its index row committed. In WAL
mode SQLite's `synchronous=NORMAL` keeps a commit through a crash of the process but may lose the last
commits when the machine loses power, so an acknowledged instance could end up on disk without its
index row. Every connection the node, workers and dashboard open must therefore run with FULL (2).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from priorwatch.db import get_engine
from priorwatch.settings import Settings

SQLITE_SYNCHRONOUS_FULL = 2


def test_every_embedded_connection_commits_durably(tmp_path: Path) -> None:
    engine = get_engine(Settings(data_dir=tmp_path / "data"))
    (tmp_path / "data").mkdir()
    with engine.connect() as a, engine.connect() as b:
        modes = [c.execute(text("PRAGMA synchronous")).scalar() for c in (a, b)]
        journal = a.execute(text("PRAGMA journal_mode")).scalar()
    assert (modes, journal) == ([SQLITE_SYNCHRONOUS_FULL] * 2, "wal")
