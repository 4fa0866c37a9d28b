"""The database schema as SQLAlchemy 2.x typed ORM classes (named ``*Row``, apart from records).

The hot tables (``calls``, ``tensors``) are keyed by ``(run_id, step, seq[, pos])`` rather than by
generated ids, so one traced step is written in bulk without reading ids back (``executemany``
on SQLite, binary ``COPY`` on PostgreSQL, see :mod:`tracer.store.pgcopy`) and read back with one
range scan each. Floating-point columns may hold NULL for a non-finite value: the
``special`` column of the row says which value it was (see :mod:`tracer.store.floats`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Deterministic constraint names, so migrations and the ORM agree on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Built-in statistics stored as columns of ``tensors`` (the order fixes their ``special`` bits:
#: a new one goes at the end, so that the bits of rows already written keep their meaning).
#: Spelled out rather than taken from ``tracer.records.BUILTIN_STATS``: this is the on-disk layout,
#: which changes only with a migration; a statistic added to the records meanwhile is stored in
#: ``extra_stats`` like any plugin statistic. A column added by a later revision is NULL in the
#: rows written before it: read back, the statistic is absent (not recorded), not 0.
STAT_COLUMNS: tuple[str, ...] = (
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
    "near_zero_frac",  # revision 0004
    "near_one_frac",  # revision 0004
)
#: ``special`` is a 32-bit signed integer on every backend: 2 bits per statistic column leave
#: room for 15 columns (tests/store check it).
MAX_STAT_COLUMNS = 15

# Caps on text columns (PostgreSQL's own limit is 1 GB): every backend refuses longer values at
# the API with a clear error (tracer.store.limits). JSON columns also cap each key and item.
# They are not part of the DDL, so changing them needs no migration.
ERROR_CHARS = 100_000
COMMAND_CHARS = 100_000
_CONFIG_CAPS = {"max_chars": 1_000_000, "key_chars": 200, "item_chars": 100_000}
_TAG_CAPS = {"max_chars": 100_000, "key_chars": 200, "item_chars": 4_096}
_PATH_CAP = {"max_chars": 10_000}

# Parameter counts past 2**31 and 64-bit seeds (PostgreSQL BIGINT; SQLite's INTEGER already
# holds 64 bits, and keeping its type spares SQLite a table rebuild in the migration).
_BIG = BigInteger().with_variant(Integer(), "sqlite")

# SQLite-only: tables clustered on their primary key, which is also how they are read.
_CLUSTERED = {"sqlite_with_rowid": False}


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    """One run and its provenance."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    pipeline: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    config: Mapped[str] = mapped_column(Text, default="{}", info=_CONFIG_CAPS)
    error: Mapped[str | None] = mapped_column(Text, info={"max_chars": ERROR_CHARS})
    seed: Mapped[int | None] = mapped_column(_BIG)
    python_version: Mapped[str | None] = mapped_column(String(50))
    torch_version: Mapped[str | None] = mapped_column(String(50))
    tracer_version: Mapped[str | None] = mapped_column(String(50))
    device: Mapped[str | None] = mapped_column(String(100))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    command: Mapped[str | None] = mapped_column(Text, info={"max_chars": COMMAND_CHARS})
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    world_size: Mapped[int] = mapped_column(Integer, default=1)
    group_id: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[str] = mapped_column(Text, default="{}", info=_TAG_CAPS)
    notes: Mapped[str] = mapped_column(Text, default="[]")
    step_count: Mapped[int] = mapped_column(Integer, default=0)
    last_metrics: Mapped[str] = mapped_column(Text, default="{}")

    __table_args__ = (
        Index(None, "name"),
        Index(None, "started_at"),
        Index(None, "group_id"),
    )


class ModuleRow(Base):
    """One module of a run's model, in ``named_modules()`` order (``idx``)."""

    __tablename__ = "modules"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, info=_PATH_CAP)
    type: Mapped[str] = mapped_column(String(200))
    parent: Mapped[str | None] = mapped_column(Text, info=_PATH_CAP)
    depth: Mapped[int] = mapped_column(Integer)
    params_own: Mapped[int] = mapped_column(_BIG)
    params_total: Mapped[int] = mapped_column(_BIG)
    trainable_own: Mapped[int] = mapped_column(_BIG)
    trainable_total: Mapped[int] = mapped_column(_BIG)
    extra_repr: Mapped[str] = mapped_column(Text, info={"max_chars": 100_000})
    parameters: Mapped[str] = mapped_column(Text)  # JSON list of ParamRecord fields

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        _CLUSTERED,
    )


class CallRow(Base):
    """One module call or captured op of one traced step."""

    __tablename__ = "calls"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    module: Mapped[str] = mapped_column(Text, info=_PATH_CAP)
    type: Mapped[str] = mapped_column(String(200))
    call_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    op: Mapped[str | None] = mapped_column(String(100))
    duration_s: Mapped[float | None] = mapped_column(Float)
    depth: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        # series(): one layer's calls across steps
        Index(None, "run_id", "module", "call_index", "kind", "op", "step"),
        _CLUSTERED,
    )


class TensorRow(Base):
    """One tensor slot (input, output or gradient) of one call, built-in statistics as columns."""

    __tablename__ = "tensors"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    pos: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    slot: Mapped[str] = mapped_column(Text, info=_PATH_CAP)
    shape: Mapped[str] = mapped_column(Text)  # "50,200,512"; "" for a 0-d tensor or an object
    dtype: Mapped[str] = mapped_column(String(50))
    device: Mapped[str] = mapped_column(String(50))
    requires_grad: Mapped[int] = mapped_column(Integer)
    type_name: Mapped[str | None] = mapped_column(String(200))  # NULL means "Tensor"
    numel: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    abs_mean: Mapped[float | None] = mapped_column(Float)
    l2: Mapped[float | None] = mapped_column(Float)
    zero_frac: Mapped[float | None] = mapped_column(Float)
    nan_count: Mapped[float | None] = mapped_column(Float)
    inf_count: Mapped[float | None] = mapped_column(Float)
    near_zero_frac: Mapped[float | None] = mapped_column(Float)  # NULL before revision 0004
    near_one_frac: Mapped[float | None] = mapped_column(Float)  # NULL before revision 0004
    special: Mapped[int] = mapped_column(Integer)  # 2 bits per stat column: NaN / +Inf / -Inf

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step", "seq"],
            ["calls.run_id", "calls.step", "calls.seq"],
            ondelete="CASCADE",
        ),
        _CLUSTERED,
    )


class ExtraStatRow(Base):
    """A statistic outside the built-in columns (``true_frac``, statistics plugins register)."""

    __tablename__ = "extra_stats"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    pos: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    special: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step", "seq", "pos"],
            ["tensors.run_id", "tensors.step", "tensors.seq", "tensors.pos"],
            ondelete="CASCADE",
        ),
        _CLUSTERED,
    )


class MetricRow(Base):
    """One scalar metric logged at a step."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    special: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        Index(None, "run_id", "step"),
    )
