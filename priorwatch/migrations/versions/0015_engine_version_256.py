"""comparison.engine_version widened to 256: the guarded VLM writes its own version plus the
registration evidence's (~100 characters), which PostgreSQL refused at VARCHAR(32)

Revision ID: 0015_engine_version_256
Revises: 0014_job_lease_delivery_outbox
Create Date: 2026-11-30 (issue 15)
"""

from __future__ import annotations

import sqlmodel
from alembic import op


revision = '0015_engine_version_256'
down_revision = '0014_job_lease_delivery_outbox'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.alter_column('engine_version', existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=256), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.alter_column('engine_version', existing_type=sqlmodel.sql.sqltypes.AutoString(length=256),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=32), existing_nullable=False)
