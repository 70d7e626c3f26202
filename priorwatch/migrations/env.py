"""Alembic environment: runs on the connection `priorwatch.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from priorwatch import models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from priorwatch.db import get_engine

        with get_engine().begin() as conn:
            _run_on(conn)
        return
    _run_on(connection)


def _run_on(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
