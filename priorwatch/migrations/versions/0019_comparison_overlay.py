"""artefacts anywhere: a result's heat-map overlay as PNG bytes in the database (issue 32)

Revision ID: 0019_comparison_overlay
Revises: 0018_history
Create Date: 2026-12-07 (issue 32)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0019_comparison_overlay'
down_revision = '0018_history'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'comparison_overlay',
        sa.Column('comparison_id', sa.Integer(), nullable=False),
        sa.Column('png', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
        sa.PrimaryKeyConstraint('comparison_id'),
    )


def downgrade() -> None:
    op.drop_table('comparison_overlay')
