"""node: quarantine for instances refused because their study is held for another patient

Revision ID: 0016_patient_quarantine
Revises: 0015_engine_version_256
Create Date: 2026-12-07 (issue 27)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0016_patient_quarantine'
down_revision = '0015_engine_version_256'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'quarantine',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('study_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('held_study_id', sa.Integer(), nullable=True),
        sa.Column('calling_ae', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('differs', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.ForeignKeyConstraint(['held_study_id'], ['study.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantine_sop_instance_uid'), ['sop_instance_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantine_study_uid'), ['study_uid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantine_study_uid'))
        batch_op.drop_index(batch_op.f('ix_quarantine_sop_instance_uid'))
        batch_op.drop_index(batch_op.f('ix_quarantine_received_at'))
    op.drop_table('quarantine')
