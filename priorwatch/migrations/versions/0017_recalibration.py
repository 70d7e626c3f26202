"""monitoring: reviewed recalibration of the engine's confidence (issue 30) and the raw confidence per finding

Revision ID: 0017_recalibration
Revises: 0016_patient_quarantine
Create Date: 2026-12-07 (issue 30)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0017_recalibration'
down_revision = '0016_patient_quarantine'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'recalibration',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('params_json', sa.Text(), nullable=True),
        sa.Column('metrics_json', sa.Text(), nullable=True),
        sa.Column('fit_start', sa.DateTime(), nullable=False),
        sa.Column('fit_end', sa.DateTime(), nullable=False),
        sa.Column('eval_start', sa.DateTime(), nullable=False),
        sa.Column('eval_end', sa.DateTime(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=True),
        sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('decision_note', sa.Text(), nullable=True),
        sa.Column('supersedes_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['supersedes_id'], ['recalibration.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('version'),
    )
    with op.batch_alter_table('recalibration', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recalibration_status'), ['status'], unique=False)
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_confidence', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_column('raw_confidence')
    with op.batch_alter_table('recalibration', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recalibration_status'))
    op.drop_table('recalibration')
