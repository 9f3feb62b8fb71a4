"""The coordinator's tables (SQLAlchemy 2 ORM) and the database handle.

SQLite by default (WAL, usable from any thread), any SQLAlchemy URL otherwise
(PostgreSQL, ``postgresql+psycopg://...``, for several coordinator replicas).
Writes are serialised by one lock so that event ids become visible in id order
(a reader that asks for ``id > last`` never skips an event committed later).
On PostgreSQL that lock also spans processes: every write transaction first
takes one transaction-scoped advisory lock, so the writes of all replicas on
one database commit one after another (sequence values are handed out in
that order too).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "WRITE_LOCK_KEY",
    "Base",
    "BlobRow",
    "BlobUploaderRow",
    "ChainCursorRow",
    "ChainEventRow",
    "Database",
    "EventRow",
    "LeaseRow",
    "NonceRow",
    "OrderRow",
    "ProviderRow",
    "SessionRow",
    "TaskBlobRow",
    "TaskRow",
    "VerifyJobRow",
]


WRITE_LOCK_KEY = 0x67656E73796E  # "gensyn": the PostgreSQL advisory lock of all writers

_BigId = BigInteger().with_variant(Integer, "sqlite")
"""A 64-bit key on PostgreSQL; SQLite's INTEGER PRIMARY KEY (already 64-bit) autoincrements."""


class Base(DeclarativeBase):
    """Declarative base of the coordinator's tables."""


class TaskRow(Base):
    """A task; ``spec`` and ``result`` are the protocol models as JSON text."""

    __tablename__ = "tasks"

    seq: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    device: Mapped[str] = mapped_column(String(16))
    gpus: Mapped[int] = mapped_column(Integer)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    provider_id: Mapped[str | None] = mapped_column(String(32), default=None)
    provider_name: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    finished_at: Mapped[float | None] = mapped_column(Float, default=None)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    account: Mapped[str | None] = mapped_column(String(42), default=None, index=True)
    chain_key: Mapped[str | None] = mapped_column(String(66), default=None, unique=True)
    payment: Mapped[str | None] = mapped_column(Text, default=None)
    verification: Mapped[str | None] = mapped_column(Text, default=None)
    checkpoint: Mapped[str | None] = mapped_column(Text, default=None)
    """The latest ``CheckpointPost`` of the running attempt (JSON): where a lost run resumes."""
    attempt: Mapped[int | None] = mapped_column(Integer, default=None)
    """1 (or None), then one more each time the run resumed on another provider."""

    __table_args__ = ({"sqlite_autoincrement": True},)


class ProviderRow(Base):
    """A registered provider; ``info`` is ``ProviderInfo`` JSON, the token only hashed."""

    __tablename__ = "providers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    info: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    registered_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    tasks_done: Mapped[int] = mapped_column(Integer, default=0)
    address: Mapped[str | None] = mapped_column(String(42), default=None)


class LeaseRow(Base):
    """A task handed to a provider; held until ``released_at`` is set."""

    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    released_at: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    release_reason: Mapped[str | None] = mapped_column(Text, default=None)
    events_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    """The ``seq`` of the last events post recorded (a retry of it is not stored twice)."""


class VerifyJobRow(Base):
    """A segment to replay (``spot``: a verifier; ``referee``: after a challenge).

    Open until a provider takes it; a taken job whose ``expires_at`` passed is
    open again. ``job`` is the ``VerifyJob`` JSON, ``verdict`` the answer.
    """

    __tablename__ = "verify_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    segment: Mapped[int] = mapped_column(Integer)
    job: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    provider_id: Mapped[str | None] = mapped_column(String(32), default=None)
    verifier_address: Mapped[str | None] = mapped_column(String(42), default=None)
    for_provider: Mapped[str | None] = mapped_column(String(32), default=None)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    done_at: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    verdict: Mapped[str | None] = mapped_column(Text, default=None)


class BlobRow(Base):
    """A stored blob (the bytes live on disk under the blob directory)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)


class BlobUploaderRow(Base):
    """Who uploaded a blob: ``account:0x...`` (lowercase), ``provider:p-...`` or ``anonymous``.

    Each PUT of the bytes adds its caller, so everyone who proved they hold
    the bytes may read them back (see ``_blob_index``).
    """

    __tablename__ = "blob_uploaders"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class TaskBlobRow(Base):
    """A blob a task uses: its bundle and inputs, its results, its checkpoints.

    ``role`` is ``bundle``, ``input``, ``result``, ``checkpoint`` or ``replica``.
    Read access to a blob follows the tasks that use it (``_blob_index``).
    """

    __tablename__ = "task_blobs"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))


class EventRow(Base):
    """One entry of a task's history; ids increase across the whole coordinator."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)
    ts: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_events_task_id_id", "task_id", "id"),
        {"sqlite_autoincrement": True},
    )


class SessionRow(Base):
    """A signed-in account (Sign-In with Ethereum); the token only hashed."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    expires_at: Mapped[float] = mapped_column(Float)


class NonceRow(Base):
    """A sign-in nonce handed out and not yet used."""

    __tablename__ = "siwe_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[float] = mapped_column(Float)


class OrderRow(Base):
    """A signed task order; one per (account, nonce) so no order is used twice."""

    __tablename__ = "orders"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), unique=True)
    signature: Mapped[str] = mapped_column(String(132))
    created_at: Mapped[float] = mapped_column(Float)


class ChainEventRow(Base):
    """A contract event already applied (so none is applied twice)."""

    __tablename__ = "chain_events"

    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))


class ChainCursorRow(Base):
    """The last block whose events were all applied (one row)."""

    __tablename__ = "chain_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def _make_engine(url: str) -> Engine:
    if url.startswith("postgres://"):
        raise ValueError(
            f"database URL {url.split('@')[-1]!r}: write postgresql+psycopg://USER:PASSWORD@"
            "HOST:PORT/DBNAME (SQLAlchemy's spelling; 'postgres://' is not understood)"
        )
    if url.startswith("postgresql://"):  # the driver installed with gensyn-jupyter
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if url in {"sqlite://", "sqlite:///:memory:"} or "mode=memory" in url:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _add_missing_columns(conn: Connection) -> None:
    """Bring a database made by an older version up to date (added nullable columns only).

    Every schema change so far adds nullable columns; ``create_all`` makes new
    tables but leaves existing ones alone, so the columns they lack are added
    here. A constraint on such a column (``tasks.chain_key`` is unique) holds
    for new databases; older ones get the column without it.
    """
    inspector = inspect(conn)
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


class Database:
    """The engine, short sessions, and the single writer lock.

    Parameters
    ----------
    url
        SQLAlchemy database URL, e.g. ``sqlite:///path/coordinator.sqlite``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.shared = self.engine.dialect.name == "postgresql"
        """True when other processes (replicas) may write to the same database."""
        with self.engine.begin() as conn:
            if self.shared:  # replicas starting at once: one creates the tables, others wait
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
            Base.metadata.create_all(conn)
            _add_missing_columns(conn)
            from ._blob_index import backfill, index_on_flush  # it imports these tables

            backfill(conn)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "before_flush", index_on_flush)
        self._write_lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it changes is committed."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction, committed on exit, under the writer lock.

        On PostgreSQL the lock is also taken in the database (an advisory lock
        released at commit), so replicas' writes commit in turn.
        """
        with self._write_lock, self._sessions() as session, session.begin():
            if self.shared:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
            yield session

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()
