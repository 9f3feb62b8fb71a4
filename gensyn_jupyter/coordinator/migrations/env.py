"""Alembic's environment: migrate the engine handed over by ``_migrate.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from gensyn_jupyter.coordinator._db import WRITE_LOCK_KEY, Base


def _run(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # one replica migrates, the others wait
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=engine.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit(
        "offline (--sql) migrations are not supported: run gensyn coordinator --migrate"
    )
_run(context.config.attributes["engine"])
