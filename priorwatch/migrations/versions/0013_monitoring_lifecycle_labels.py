"""monitoring: alert lifecycle columns, signed-report label cache, study time index

Revision ID: 0013_monitoring_lifecycle_labels
Revises: 0012_dashboard_signoff_sessions
Create Date: 2026-11-30 (issue 13)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0013_monitoring_lifecycle_labels'
down_revision = '0012_dashboard_signoff_sessions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('monitoringalert', schema=None) as batch_op:
        batch_op.add_column(sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='warning'))
        batch_op.add_column(sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False,
                                      server_default='qa'))
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('n_seen', sa.Integer(), nullable=False, server_default='1'))
        batch_op.create_index(batch_op.f('ix_monitoringalert_resolved_at'), ['resolved_at'], unique=False)

    op.create_table('signedreportlabels',
    sa.Column('signed_report_id', sa.Integer(), nullable=False),
    sa.Column('labeler_version', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('labels_json', sa.Text(), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['signed_report_id'], ['signedreport.id'], ),
    sa.PrimaryKeyConstraint('signed_report_id')
    )
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.create_index('ix_study_study_datetime', ['study_datetime'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.drop_index('ix_study_study_datetime')
    op.drop_table('signedreportlabels')
    with op.batch_alter_table('monitoringalert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_monitoringalert_resolved_at'))
        batch_op.drop_column('n_seen')
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('route')
        batch_op.drop_column('severity')
