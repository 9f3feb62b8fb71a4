"""Two real coordinator replicas on one real PostgreSQL server (loopback, own temp dir).

Providers and clients are spread across both replicas: every task is leased
once and completed once with the right result, and an SSE client on replica B
sees a task that was submitted and run entirely through replica A.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from benchmarks._replicas import (
    POSTGRES_MISSING,
    Replica,
    job_value,
    postgres_bin,
    provider_loop,
    request_any,
    running_postgres,
    submit_job,
)
from gensyn_jupyter.coordinator import head_revision
from gensyn_jupyter.coordinator._db import LeaseRow

from .test_migrations import gensyn_migrate, schema_differences

pytestmark = pytest.mark.xdist_group("postgres_replicas")

_DONE = {"settled", "failed", "cancelled", "expired", "slashed"}
_LIFE = ["queued", "running", "committed", "verified", "settled"]  # a free task's, run once


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if postgres_bin() is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(POSTGRES_MISSING)
        pytest.skip(POSTGRES_MISSING)
    with running_postgres(timeout=60) as url:
        yield url


@pytest.fixture(scope="module")
def replicas(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    data = tmp_path_factory.mktemp("replicas")  # shared: the blobs
    pair = (
        Replica(postgres_url, data, data / "a.log", lease_ttl=10),
        Replica(postgres_url, data, data / "b.log", lease_ttl=10),
    )
    errors: list[BaseException] = []

    def start(replica: Replica) -> None:
        try:
            replica.start(timeout=60)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    # both at once, on an empty database: one creates the tables, the other waits for it
    threads = [threading.Thread(target=start, args=(r,)) for r in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    try:
        assert not errors, errors
        yield pair
    finally:
        for replica in pair:
            replica.stop()


def _task(urls: list[str], task_id: str, prefer: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    r = request_any(urls, "GET", f"/v1/tasks/{task_id}", deadline=deadline, prefer=prefer)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _states(url: str, task_id: str) -> list[str]:
    r = httpx.get(f"{url}/v1/tasks/{task_id}/events", params={"format": "json"}, timeout=20)
    assert r.status_code == 200, r.text
    return [e["data"]["state"] for e in r.json() if e["kind"] == "state"]


def _wait_done(urls: list[str], ids: list[str], within: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + within
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        for i, task_id in enumerate(ids):
            if task_id not in done:
                task = _task(urls, task_id, prefer=i % 2)
                if task["state"] in _DONE:
                    done[task_id] = task
        if time.monotonic() > deadline:
            pending = {t: _task(urls, t, 0)["state"] for t in ids if t not in done}
            raise AssertionError(f"not finished within {within:g} s: {pending}")
        time.sleep(0.2)
    return done


def test_tasks_spread_over_two_replicas_are_leased_once_and_completed_once(
    replicas: tuple[Replica, Replica], postgres_url: str
) -> None:
    urls = [r.url for r in replicas]
    leases: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(provider_id: str, task_id: str) -> None:
        with lock:
            leases.append((provider_id, task_id))

    stop = threading.Event()
    providers = [
        threading.Thread(
            target=provider_loop,
            args=(urls, f"p{i}", stop),
            kwargs={"on_lease": record, "prefer": i % 2},
            daemon=True,
        )
        for i in range(4)
    ]
    for p in providers:
        p.start()
    try:
        deadline = time.monotonic() + 30
        jobs = {submit_job(urls, n, deadline=deadline, prefer=n % 2): n for n in range(24)}
        done = _wait_done(urls, list(jobs), within=40)
    finally:
        stop.set()
        for p in providers:
            p.join(10)
    assert {t: d["state"] for t, d in done.items()} == dict.fromkeys(jobs, "settled")
    counts = collections.Counter(task_id for _, task_id in leases)
    assert counts == collections.Counter(dict.fromkeys(jobs, 1))
    assert len({p for p, _ in leases}) >= 2, "the work was spread over several providers"
    for task_id, n in jobs.items():
        values = done[task_id]["result"]["values"]
        other = urls[(n + 1) % 2]  # not the replica the task was submitted to
        blob = httpx.get(f"{other}/v1/blobs/{values}", timeout=20)
        assert json.loads(blob.content) == job_value(n)
        assert _states(urls[n % 2], task_id) == _LIFE
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            per_task = conn.execute(
                select(LeaseRow.task_id, func.count()).group_by(LeaseRow.task_id)
            ).all()
    finally:
        engine.dispose()
    assert {t: c for t, c in per_task if t in jobs} == dict.fromkeys(jobs, 1)


def _read_sse(
    url: str, seen: list[dict[str, Any]], ready: threading.Event, stop: threading.Event
) -> None:
    with httpx.stream(
        "GET", f"{url}/v1/events", params={"kind": "state"}, timeout=httpx.Timeout(5, read=30)
    ) as r:
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "ready":
                ready.set()
            elif line.startswith("data:") and kind == "task":
                seen.append(json.loads(line.split(":", 1)[1]))
            if stop.is_set():
                return


def test_sse_on_replica_b_sees_a_task_submitted_and_run_through_replica_a(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    seen: list[dict[str, Any]] = []
    ready, stop = threading.Event(), threading.Event()
    reader = threading.Thread(target=_read_sse, args=(b.url, seen, ready, stop), daemon=True)
    reader.start()
    assert ready.wait(20), "the SSE stream on replica B sent no ready event"
    provider = threading.Thread(target=provider_loop, args=([a.url], "only-a", stop), daemon=True)
    provider.start()
    try:
        task_id = submit_job([a.url], 7, deadline=time.monotonic() + 20)
        deadline = time.monotonic() + 20
        while not any(
            e["task_id"] == task_id and e["data"]["state"] == "settled" for e in list(seen)
        ):
            assert time.monotonic() < deadline, f"replica B's stream saw only {seen}"
            time.sleep(0.1)
    finally:
        stop.set()
        provider.join(10)
    mine = [e for e in seen if e["task_id"] == task_id]
    assert [e["data"]["state"] for e in mine] == _LIFE
    assert [e["id"] for e in mine] == sorted(e["id"] for e in mine)
    task = _task([b.url], task_id, prefer=0)
    assert task["provider_name"] == "only-a" and task["state"] == "settled"


def test_a_postgres_url_spelt_postgres_is_refused_with_the_spelling_to_use() -> None:
    from gensyn_jupyter.coordinator._db import Database

    with pytest.raises(ValueError, match=r"postgresql\+psycopg://USER:PASSWORD@HOST"):
        Database("postgres://me:secret@db.example:5432/gensyn")


def test_migrate_makes_a_fresh_postgres_database_match_the_models(
    postgres_url: str, tmp_path: Path
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    with psycopg.connect(
        host=server.host, port=server.port, user=server.username, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute("CREATE DATABASE migrated")
    url = server.set(database="migrated").render_as_string(hide_password=False)
    done = gensyn_migrate("--data-dir", str(tmp_path), "--db", url)
    assert done.returncode == 0, done.stderr
    assert f"from none to revision {head_revision()}" in done.stdout
    assert schema_differences(url) == []
    assert not (tmp_path / "coordinator.sqlite").exists()
