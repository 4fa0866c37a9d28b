"""64-bit parameter counts (a model past 2,147,483,647 parameters) and seeds (torch takes 64 bits).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COUNTS = ("params_own", "params_total", "trainable_own", "trainable_total")
WIDENED = [("modules", column) for column in COUNTS] + [("runs", "seed")]


def upgrade() -> None:
    """Widen the columns (PostgreSQL only: SQLite's INTEGER already holds 64-bit values)."""
    if op.get_bind().dialect.name == "sqlite":
        return  # nothing to change, and no table rebuild
    for table, column in WIDENED:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    """Back to 32-bit counts."""
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in WIDENED:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
