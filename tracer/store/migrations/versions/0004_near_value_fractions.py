"""Two built-in statistics as columns of ``tensors``: near_zero_frac and near_one_frac (the
fractions of a tensor's finite values with |x| <= 0.01 and with 0.99 <= |x| <= 1.01).

Rows written before this revision keep NULL there: read back, those statistics are absent (not
recorded), never 0. The columns come last in ``special``'s bits, so old masks keep their
meaning.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("near_zero_frac", "near_one_frac")


def upgrade() -> None:
    """Add the two nullable columns (no table rebuild on SQLite, no rewrite on PostgreSQL)."""
    for name in COLUMNS:
        op.add_column("tensors", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop them again (their ``special`` bits are never set: the fractions are finite)."""
    for name in reversed(COLUMNS):
        op.drop_column("tensors", name)
