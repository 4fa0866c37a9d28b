"""Parameter counts as 64-bit integers: a model with more than 2,147,483,647 parameters.

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


def upgrade() -> None:
    """Widen the modules table's parameter counts (PostgreSQL; SQLite's integers are 64-bit)."""
    if op.get_bind().dialect.name == "sqlite":
        return  # an INTEGER column already holds 64-bit values; no table rebuild needed
    for column in COUNTS:
        op.alter_column("modules", column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    """Back to 32-bit counts."""
    if op.get_bind().dialect.name == "sqlite":
        return
    for column in COUNTS:
        op.alter_column("modules", column, type_=sa.Integer(), existing_type=sa.BigInteger())
