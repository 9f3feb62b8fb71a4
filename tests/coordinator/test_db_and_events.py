"""The database handle and the event log: WAL, ordering under concurrency, wake-ups."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time

import pytest
from sqlalchemy import text

from gensyn_jupyter.coordinator._db import Database, TaskRow
from gensyn_jupyter.coordinator._events import Notifier, append_event, events_after

pytestmark = pytest.mark.anyio


def _db_with_task(path: pathlib.Path) -> Database:
    return _add_task(Database(f"sqlite:///{path / 'c.sqlite'}"))


def _add_task(db: Database) -> Database:
    with db.write() as s:
        s.add(
            TaskRow(
                id="t-1",
                state="queued",
                device="auto",
                gpus=1,
                spec="{}",
                created_at=0.0,
                updated_at=0.0,
            )
        )
    return db


def test_sqlite_file_uses_wal(tmp_path: pathlib.Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with db.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.close()


def test_in_memory_database_keeps_its_tables() -> None:
    db = _add_task(Database("sqlite://"))
    with db.read() as s:
        assert s.get(TaskRow, 1) is not None


def test_events_after_returns_the_tail_in_order(tmp_path: pathlib.Path) -> None:
    db = _db_with_task(tmp_path)
    with db.write() as s:
        for i in range(5):
            append_event(s, "t-1", "stdout", {"text": str(i)})
    with db.read() as s:
        all_events = events_after(s, "t-1", 0, 100)
        tail = events_after(s, "t-1", all_events[1].id, 2)
    assert [e.data["text"] for e in all_events] == ["0", "1", "2", "3", "4"]
    assert [e.data["text"] for e in tail] == ["2", "3"]


def test_concurrent_appends_are_read_once_each_in_id_order(tmp_path: pathlib.Path) -> None:
    db = _db_with_task(tmp_path)
    writers, per_writer = 6, 40

    def write(n: int) -> None:
        for i in range(per_writer):
            with db.write() as s:
                append_event(s, "t-1", "stdout", {"text": f"{n}:{i}"})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    seen: list[int] = []
    texts: list[str] = []
    deadline = time.monotonic() + 20
    while len(seen) < writers * per_writer and time.monotonic() < deadline:
        with db.read() as s:
            batch = events_after(s, "t-1", seen[-1] if seen else 0, 7)
        seen += [e.id for e in batch]
        texts += [str(e.data["text"]) for e in batch]
    for t in threads:
        t.join(5)
    assert seen == sorted(set(seen)), "an event was read twice or out of order"
    assert sorted(texts) == sorted(f"{n}:{i}" for n in range(writers) for i in range(per_writer))


async def test_notifier_wakes_waiters_at_once_and_bounds_the_wait() -> None:
    notifier = Notifier()
    token = notifier.token()
    start = time.monotonic()
    assert await notifier.wait(token, 0.05) is False
    assert 0.04 < time.monotonic() - start < 1.0

    token = notifier.token()
    waiter = asyncio.create_task(notifier.wait(token, 5.0))
    await asyncio.sleep(0)
    start = time.monotonic()
    notifier.notify()
    assert await asyncio.wait_for(waiter, 1.0) is True
    assert time.monotonic() - start < 0.5


async def test_a_notify_before_the_wait_is_not_lost() -> None:
    notifier = Notifier()
    token = notifier.token()
    notifier.notify()  # happens between "check the database" and "wait"
    assert await notifier.wait(token, 5.0) is True
    assert notifier.token() is not token
