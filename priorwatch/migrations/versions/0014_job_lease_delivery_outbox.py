"""workers: job leases (who runs it, until when), retry due time; delivery outbox columns

Revision ID: 0014_job_lease_delivery_outbox
Revises: 0013_monitoring_lifecycle_labels
Create Date: 2026-11-30 (issue 14)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0014_job_lease_delivery_outbox'
down_revision = '0013_monitoring_lifecycle_labels'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leased_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('created_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_delivery_idempotency_key'), ['idempotency_key'], unique=True)
    # Rows from before the outbox get their key (the webhook's Idempotency-Key was the same shape).
    op.execute("UPDATE delivery SET idempotency_key = 'priorwatch-' || comparison_id || '-' || kind "
               "WHERE idempotency_key IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_idempotency_key'))
        batch_op.drop_column('created_at')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('idempotency_key')

    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('leased_by')
