"""``gensyn coordinator --migrate``: Alembic brings a database to the models' schema.

The PostgreSQL twin of the first test is in ``test_postgres_replicas.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from gensyn_jupyter.coordinator import head_revision, migrate
from gensyn_jupyter.coordinator._db import Base, BlobRow, Database


def gensyn_migrate(*args: str) -> subprocess.CompletedProcess[str]:
    """``gensyn coordinator --migrate ARGS`` as a real process (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", "coordinator", "--migrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def schema_differences(url: str) -> list[object]:
    """What differs between the database at ``url`` and the models (empty: nothing)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def test_migrate_makes_a_fresh_database_match_the_models_and_is_idempotent(
    tmp_path: Path,
) -> None:
    done = gensyn_migrate("--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"the database schema was upgraded from none to revision {head_revision()}"
    )
    assert schema_differences(f"sqlite:///{tmp_path / 'coordinator.sqlite'}") == []
    again = gensyn_migrate("--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"the database is up to date (schema revision {head_revision()})"


def test_migrate_adopts_a_database_made_before_migrations_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    db = Database(url)  # how a coordinator without --migrate creates its tables
    with db.write() as session:
        session.add(BlobRow(sha256="ab" * 32, size=3, created_at=1.0))
    db.close()
    assert migrate(url) == (None, head_revision())
    db = Database(url)
    try:
        with db.read() as session:
            assert session.get(BlobRow, "ab" * 32) is not None
    finally:
        db.close()
    assert schema_differences(url) == []


def test_migrate_refuses_a_url_it_cannot_use_with_the_spelling_to_use(tmp_path: Path) -> None:
    done = gensyn_migrate("--data-dir", str(tmp_path), "--db", "postgres://me:pw@db/gensyn")
    assert done.returncode == 2
    assert "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DBNAME" in done.stderr
