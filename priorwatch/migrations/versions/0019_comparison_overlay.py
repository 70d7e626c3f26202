"""artefacts anywhere: a result's heat-map overlay as PNG bytes in the database (issue 32)

Revision ID: 0019_comparison_overlay
Revises: 0018 (issue 29's result fields), or 0017_recalibration until that revision exists
Create Date: 2026-12-07 (issue 32)
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op


def _previous() -> str:
    """0018 is another change of the same day (issue 29): follow it when it is there, so the chain
    keeps one head whichever lands first. Replace by the literal once both are in."""
    for f in sorted(Path(__file__).resolve().parent.glob("0018_*.py")):
        m = re.search(r"^revision = ['\"]([^'\"]+)['\"]", f.read_text(), re.M)
        if m:
            return m.group(1)
    return "0017_recalibration"


revision = '0019_comparison_overlay'
down_revision = _previous()
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
