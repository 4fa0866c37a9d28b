"""Statistics outside the built-in columns (bool ``true_frac``, plugin statistics); an index for
``list_runs(group_id=...)`` over the ranks of a multi-process job.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the extra_stats table and the runs.group_id index."""
    op.create_table(
        "extra_stats",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("pos", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("special", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "step", "seq", "pos"],
            ["tensors.run_id", "tensors.step", "tensors.seq", "tensors.pos"],
            name="fk_extra_stats_run_id_tensors",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "step", "seq", "pos", "name", name="pk_extra_stats"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_runs_group_id", "runs", ["group_id"])


def downgrade() -> None:
    """Drop what this revision added."""
    op.drop_index("ix_runs_group_id", table_name="runs")
    op.drop_table("extra_stats")
