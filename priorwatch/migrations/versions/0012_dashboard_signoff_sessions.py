"""dashboard: one sign-off per comparison, claims, sessions, autosaved drafts, login throttle

Revision ID: 0012_dashboard_signoff_sessions
Revises: 0001_baseline
Create Date: 2026-11-30 (issue 12)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0012_dashboard_signoff_sessions'
down_revision = '0001_baseline'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('worklistitem', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('claim_expires_at', sa.DateTime(), nullable=True))

    op.create_table('signoff',
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('review_id', sa.Integer(), nullable=False),
    sa.Column('worklist_item_id', sa.Integer(), nullable=False),
    sa.Column('signer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signed_at', sa.DateTime(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.ForeignKeyConstraint(['review_id'], ['review.id'], ),
    sa.ForeignKeyConstraint(['worklist_item_id'], ['worklistitem.id'], ),
    sa.PrimaryKeyConstraint('comparison_id'),
    sa.UniqueConstraint('review_id')
    )
    with op.batch_alter_table('signoff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signoff_worklist_item_id'), ['worklist_item_id'], unique=False)

    op.create_table('dashboardsession',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('end_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('grant_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('grant_expires_at', sa.DateTime(), nullable=True),
    sa.Column('current_item_id', sa.Integer(), nullable=True),
    sa.Column('page', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('dashboardsession', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dashboardsession_username'), ['username'], unique=False)

    op.create_table('reviewdraft',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('worklist_item_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('state_json', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['worklist_item_id'], ['worklistitem.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username', 'worklist_item_id')
    )
    with op.batch_alter_table('reviewdraft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reviewdraft_worklist_item_id'), ['worklist_item_id'], unique=False)

    op.create_table('loginthrottle',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('loginthrottle')
    with op.batch_alter_table('reviewdraft', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reviewdraft_worklist_item_id'))
    op.drop_table('reviewdraft')
    with op.batch_alter_table('dashboardsession', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboardsession_username'))
    op.drop_table('dashboardsession')
    with op.batch_alter_table('signoff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signoff_worklist_item_id'))
    op.drop_table('signoff')
    with op.batch_alter_table('worklistitem', schema=None) as batch_op:
        batch_op.drop_column('claim_expires_at')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('claimed_by')
