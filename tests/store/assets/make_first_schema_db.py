"""Rebuild ``first_schema.db``: a database made by schema revision 0001, holding one small run.

Run from the repository root: ``python tests/store/assets/make_first_schema_db.py``. The rows
are written with plain SQL in revision 0001's layout, so the file stays what the first schema
produced even as the store's code moves on.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from sqlalchemy import create_engine

from tracer.store.migrate import upgrade_to

TARGET = Path(__file__).with_name("first_schema.db")


def _rows(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO runs (id, name, pipeline, status, config, error, seed, python_version, "
        "torch_version, tracer_version, device, host, pid, git_commit, command, started_at, "
        "finished_at, updated_at, rank, world_size, group_id, tags, notes, step_count, "
        "last_metrics) VALUES (1, 'old-run', 'sentiment', 'completed', '{\"hidden_dim\": 64}', "
        "NULL, 1, '3.11.7', '2.13.0', '0.1.0', 'cpu', 'old-host', 4242, NULL, 'tracer run', "
        "1700000000.0, 1700000100.0, 1700000100.0, 0, 1, NULL, '{}', '[]', 2, "
        "'{\"loss\": 0.5}')"
    )
    conn.execute(
        "INSERT INTO modules VALUES (1, 0, '', 'Net', NULL, 0, 0, 10, 0, 10, '', '[]'), "
        "(1, 1, 'fc', 'Linear', '', 1, 10, 10, 10, 10, '3, 2', "
        '\'[["weight", [2, 3], "float32", 6, true, null]]\')'
    )
    for step in (0, 5):
        conn.execute(
            "INSERT INTO calls VALUES (1, ?, 0, 'fc', 'Linear', 0, 'module', NULL, 0.001, 1)",
            (step,),
        )
        conn.execute(
            "INSERT INTO tensors VALUES (1, ?, 0, 0, 'output', '0', '4,2', 'float32', 'cpu', "
            "1, NULL, 8, ?, 1.0, -1.0, NULL, 0.5, 2.0, 0.0, 0, 1, 512)",
            (step, 0.1 * (step + 1)),  # max stored as NULL + special code 2 (+Inf)
        )
        conn.execute("INSERT INTO metrics (run_id, step, name, value, special) VALUES "
                     "(1, ?, 'loss', ?, 0)", (step, 1.0 / (step + 1)))  # fmt: skip


def main() -> None:
    """Create the asset from scratch."""
    TARGET.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{TARGET}")
    upgrade_to(engine, "0001")
    engine.dispose()
    conn = sqlite3.connect(TARGET)
    with conn:
        _rows(conn)
    conn.execute("VACUUM")
    conn.close()
    print(f"wrote {TARGET}", file=sys.stderr)


if __name__ == "__main__":
    main()
