"""First schema: runs, modules, calls, tensors (built-in statistics as columns), metrics.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_CLUSTERED = {"sqlite_with_rowid": False}
_STATS = (
    "numel",
    "mean",
    "std",
    "min",
    "max",
    "abs_mean",
    "l2",
    "zero_frac",
    "nan_count",
    "inf_count",
)


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("python_version", sa.String(50), nullable=True),
        sa.Column("torch_version", sa.String(50), nullable=True),
        sa.Column("tracer_version", sa.String(50), nullable=True),
        sa.Column("device", sa.String(100), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("world_size", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.String(200), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("last_metrics", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_name", "runs", ["name"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])


def _modules() -> None:
    op.create_table(
        "modules",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("parent", sa.Text(), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("params_own", sa.Integer(), nullable=False),
        sa.Column("params_total", sa.Integer(), nullable=False),
        sa.Column("trainable_own", sa.Integer(), nullable=False),
        sa.Column("trainable_total", sa.Integer(), nullable=False),
        sa.Column("extra_repr", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_modules_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "idx", name="pk_modules"),
        **_CLUSTERED,
    )


def _calls() -> None:
    op.create_table(
        "calls",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("module", sa.Text(), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("call_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("op", sa.String(100), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_calls_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "step", "seq", name="pk_calls"),
        **_CLUSTERED,
    )
    op.create_index(
        "ix_calls_run_id_module_call_index_kind_op_step",
        "calls",
        ["run_id", "module", "call_index", "kind", "op", "step"],
    )


def _tensors() -> None:
    op.create_table(
        "tensors",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("pos", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("slot", sa.Text(), nullable=False),
        sa.Column("shape", sa.Text(), nullable=False),
        sa.Column("dtype", sa.String(50), nullable=False),
        sa.Column("device", sa.String(50), nullable=False),
        sa.Column("requires_grad", sa.Integer(), nullable=False),
        sa.Column("type_name", sa.String(200), nullable=True),
        *(sa.Column(name, sa.Float(), nullable=True) for name in _STATS),
        sa.Column("special", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "step", "seq"],
            ["calls.run_id", "calls.step", "calls.seq"],
            name="fk_tensors_run_id_calls",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "step", "seq", "pos", name="pk_tensors"),
        **_CLUSTERED,
    )


def _metrics() -> None:
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("special", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_metrics_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
    )
    op.create_index("ix_metrics_run_id_step", "metrics", ["run_id", "step"])


def upgrade() -> None:
    """Create the first schema."""
    _runs()
    _modules()
    _calls()
    _tensors()
    _metrics()


def downgrade() -> None:
    """Drop every table of the first schema."""
    for table in ("metrics", "tensors", "calls", "modules", "runs"):
        op.drop_table(table)
