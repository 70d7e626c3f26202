"""Schema migrations: the revision chain builds the models' schema, an older database is
upgraded with every row kept, and a database from before migrations is refused until
`priorwatch db upgrade` (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from priorwatch.migrate import BASELINE, SchemaOutOfDate, alembic_config, current_revision, head_revision, prepare_schema

REPO = Path(__file__).resolve().parents[1]


def _pg_url() -> Iterator[str]:
    schema = f"pw_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1/test", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:  # pragma: no cover - CI has PostgreSQL
        pytest.fail(f"PostgreSQL on 127.0.0.1 is required: {exc.__class__.__name__}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pw.db'}"
    else:
        yield from _pg_url()


def _upgrade(engine: sa.Engine, to: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), to)


def _diffs(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(ctx, SQLModel.metadata)]


def _value(col: sa.Column) -> object:  # type: ignore[type-arg]
    t = col.type
    if isinstance(t, sa.Boolean):
        return True
    if isinstance(t, sa.Integer):
        return 1  # every table's row has id 1, so foreign keys point at it
    if isinstance(t, sa.Float):
        return 1.5
    if isinstance(t, sa.DateTime):
        return dt.datetime(2026, 1, 2, 3, 4, 5)
    if isinstance(t, sa.Date):
        return dt.date(2026, 1, 2)
    if isinstance(t, sa.String) and t.length:
        return f"{col.name}"[: t.length]
    return f"{col.table.name}.{col.name} ÄÖ — text"


def test_revision_chain_builds_the_models_schema(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    _upgrade(engine, "head")
    assert _diffs(engine) == []
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()


def test_old_database_keeps_every_row_through_upgrade(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    _upgrade(engine, BASELINE)  # the schema as it stood at the commit migrations began
    old = sa.MetaData()
    old.reflect(engine)
    tables = [t for t in old.sorted_tables if t.name != "alembic_version"]
    assert len(tables) >= 15
    rows = {t.name: {c.name: _value(c) for c in t.columns} for t in tables}
    with engine.begin() as conn:
        for t in tables:
            conn.execute(t.insert().values(**rows[t.name]))
    assert head_revision() != BASELINE
    with pytest.raises(SchemaOutOfDate, match="priorwatch db upgrade"):
        prepare_schema(engine)
    prepare_schema(engine, upgrade=True)
    assert _diffs(engine) == []
    with engine.connect() as conn:
        for t in tables:
            got = conn.execute(t.select()).mappings().all()  # the old columns, typed as they were
            assert len(got) == 1, t.name
            for k, v in rows[t.name].items():
                assert got[0][k] == v, f"{t.name}.{k}"


def test_database_from_before_migrations_is_refused_then_upgraded_by_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    engine = sa.create_engine(url)
    _upgrade(engine, BASELINE)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")  # what create_all left before migrations
        conn.exec_driver_sql("INSERT INTO study (study_uid, patient_id, issuer, patient_name, patient_sex, accession,"
                             " modality, body_part, description, institution, reason, calling_ae, role, state,"
                             " version, n_instances, first_received_at, last_received_at) VALUES ('1.2.3', 'P1',"
                             " '', '', '', '', 'CR', '', '', '', '', '', 'incoming', 'done', 1, 1, '2026-01-01',"
                             " '2026-01-01')")
    with pytest.raises(SchemaOutOfDate, match="from before migrations"):
        prepare_schema(engine)
    env = {"PRIORWATCH_DATA_DIR": str(tmp_path), "PRIORWATCH_DATABASE_URL": url, "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(REPO)}
    run = subprocess.run([str(Path(sys.executable).parent / "priorwatch"), "db", "upgrade"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "upgraded pre-migration" in run.stdout
    assert _diffs(engine) == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT study_uid FROM study").scalars().all() == ["1.2.3"]
        assert current_revision(conn) == head_revision()


def test_fresh_database_is_created_at_head_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pw.db'}")
    assert prepare_schema(engine) == "created"
    assert _diffs(engine) == []
    assert prepare_schema(engine) == "current"
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaOutOfDate, match="newer"):
        prepare_schema(engine, upgrade=True)


def test_migrations_have_one_head() -> None:
    from priorwatch.migrate import heads

    assert len(heads()) == 1


def test_revision_ids_fit_alembic_version_on_postgresql() -> None:
    """alembic_version.version_num is VARCHAR(32): a longer id fails on PostgreSQL only."""
    from alembic.script import ScriptDirectory

    ids = [s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    assert len(ids) >= 2
    assert [i for i in ids if len(i) > 32] == []
