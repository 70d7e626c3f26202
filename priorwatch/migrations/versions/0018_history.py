"""results: the relevant history of each comparison and each finding's trajectory (issue 29)

Revision ID: 0018_history
Revises: 0017_recalibration
Create Date: 2026-12-07 (issue 29)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0018_history'
down_revision = '0017_recalibration'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priors_json', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('prior_choices_json', sa.Text(), nullable=True))
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size_mm', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('first_seen', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('trajectory', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('history_json', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_column('history_json')
        batch_op.drop_column('trajectory')
        batch_op.drop_column('first_seen')
        batch_op.drop_column('size_mm')
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.drop_column('prior_choices_json')
        batch_op.drop_column('priors_json')
