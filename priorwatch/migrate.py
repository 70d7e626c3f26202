"""Schema migrations with Alembic: a fresh database is created at head, an older one is
upgraded only on request (`priorwatch db upgrade`), never behind the operator's back.

Why not `create_all` alone: it never alters an existing table, so a hospital upgrading
PriorWatch would silently lose new columns. Every schema change from the baseline on is a
revision in `priorwatch/migrations/versions/`; `tests/test_migrations.py` checks that the
chain of revisions builds exactly the schema of `priorwatch.models`.

The command line is `priorwatch db upgrade|current` (`priorwatch.cli`); this module has no entry
point of its own.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from priorwatch import models  # noqa: F401  (registers the tables)

__all__ = ["BASELINE", "SchemaOutOfDate", "alembic_config", "current_revision", "head_revision", "heads",
           "prepare_schema"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BASELINE = "0001_baseline"  # the schema as it stood when migrations began (main at 62cbf10)
_PG_LOCK_KEY = 0x5057_4D49  # "PWMI": one advisory lock so concurrent starters migrate once


class SchemaOutOfDate(RuntimeError):
    """The database's schema is older (or newer) than this code's; say what to run."""


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def heads() -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


@lru_cache(maxsize=1)
def head_revision() -> str:
    hs = heads()
    if len(hs) != 1:
        raise RuntimeError(f"migrations have {len(hs)} heads {hs}: chain the newest revision onto the other")
    return hs[0]


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine, conn: Connection) -> Iterator[None]:
    """Serialise schema work between processes that start at once (node, workers, dashboard)."""
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        yield
        return
    db = engine.url.database
    if engine.dialect.name == "sqlite" and db and db != ":memory:":
        with open(f"{db}.migratelock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    yield


def prepare_schema(engine: Engine, upgrade: bool = False) -> str:
    """Make sure the database is at head; return what was done.

    Empty database: tables created from the models and stamped at head (the migration test
    proves that equals running every revision). At head: nothing. Older (or a database from
    before migrations, which has tables but no version): upgraded when `upgrade`, else
    `SchemaOutOfDate` naming the command to run. Newer than this code: always refused.
    """
    head = head_revision()
    with engine.begin() as conn, _migration_lock(engine, conn):
        rev = current_revision(conn)
        if rev == head:
            return "current"
        ours = set(SQLModel.metadata.tables)
        present = set(inspect(conn).get_table_names()) & ours
        cfg = alembic_config(conn)
        if rev is None and not present:
            SQLModel.metadata.create_all(conn)
            command.stamp(cfg, head)
            return "created"
        known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
        if rev is not None and rev not in known:
            raise SchemaOutOfDate(
                f"the database's schema ({rev}) is newer than this PriorWatch's ({head}): upgrade PriorWatch")
        if not upgrade:
            raise SchemaOutOfDate(
                f"the database's schema is {rev or 'from before migrations'}, this PriorWatch needs {head}: "
                "back up the database, then run `priorwatch db upgrade`")
        if rev is None:
            command.stamp(cfg, BASELINE)  # tables from before migrations are the baseline schema
        command.upgrade(cfg, "head")
        return f"upgraded {rev or 'pre-migration'} -> {head}"

