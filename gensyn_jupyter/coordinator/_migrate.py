"""``gensyn coordinator --migrate``: bring a database's schema to the newest revision (Alembic).

A database made before migrations existed (its tables created when the
coordinator started) is first completed the old way (new tables, new
nullable columns) and marked as revision ``0001``; then every later
revision runs. On PostgreSQL the migration holds the writers' advisory lock,
so replicas that migrate at once do it one after the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect

from ._db import Base, _add_missing_columns, _make_engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["head_revision", "migrate"]

_SCRIPTS = Path(__file__).resolve().parent / "migrations"
_BASELINE = "0001"


def _config(engine: Engine | None = None) -> Config:
    from alembic.config import Config  # imported when used: the coordinator starts faster

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest schema revision this version knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def migrate(url: str) -> tuple[str | None, str]:
    """Upgrade the database at ``url`` to the newest revision.

    Returns
    -------
    tuple of (str or None, str)
        The revision before (None: an empty database, or one made before
        migrations existed) and after.
    """
    from alembic import command
    from alembic.migration import MigrationContext

    engine = _make_engine(url)
    try:
        config = _config(engine)
        with engine.connect() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
        tables = set(inspect(engine).get_table_names())
        if before is None and "tasks" in tables:  # made by create_all: adopt it
            with engine.begin() as conn:
                Base.metadata.create_all(conn)
                _add_missing_columns(conn)
            command.stamp(config, _BASELINE)
        command.upgrade(config, "head")
        with engine.connect() as conn:
            after = MigrationContext.configure(conn).get_current_revision()
        assert after is not None
        return before, after
    finally:
        engine.dispose()
