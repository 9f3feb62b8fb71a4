"""``GET /v1/events`` over real HTTP: task changes a caller may see, provider changes, resuming.

The stream never ends, so it is read from a coordinator served by uvicorn in a
thread (the ASGI test transport waits for a response to finish).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from httpx_sse import ServerSentEvent, connect_sse

from gensyn_jupyter.coordinator import create_app
from gensyn_jupyter.coordinator._context import Context
from gensyn_jupyter.coordinator._db import SessionRow, TaskRow
from gensyn_jupyter.coordinator._events import append_event
from gensyn_jupyter.coordinator._ids import hash_token

from .coordinator_helpers import bundle_bytes, sha

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
_PROVIDER = {"name": "box", "device_type": "cpu", "cpu_count": 2, "python": "3.11", "torch": "2"}


@dataclasses.dataclass
class Live:
    url: str
    ctx: Context
    http: httpx.Client

    def submit(self) -> str:
        data = bundle_bytes()
        assert self.http.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
        r = self.http.post("/v1/tasks", json={"bundle": sha(data)})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def owned_task(self, account: str) -> str:
        """A task of ``account`` with one state event, written as a paid network would."""
        task_id = f"t-{account[2:8]}-{time.monotonic_ns()}"
        now = time.time()
        with self.ctx.db.write() as session:
            session.add(
                TaskRow(
                    id=task_id,
                    state="awaiting_approval",
                    device="auto",
                    gpus=1,
                    spec=json.dumps({"bundle": "0" * 64}),
                    created_at=now,
                    updated_at=now,
                    gpu_seconds=0.0,
                    account=account,
                )
            )
            session.flush()
            append_event(session, task_id, "state", {"state": "awaiting_approval"}, now)
        return task_id

    def session_token(self, account: str) -> str:
        token = f"session-of-{account}"
        with self.ctx.db.write() as session:
            session.add(
                SessionRow(
                    token_hash=hash_token(token), address=account, expires_at=time.time() + 3600
                )
            )
        return token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="coordinator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "coordinator did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live(tmp_path: pathlib.Path) -> Iterator[Live]:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'coordinator.sqlite'}", blob_dir=tmp_path / "blobs"
    )
    ctx: Context = app.state.coordinator
    # Pings every 0.3 s, so a test sees the keep-alive comments; a 0.2 s fallback
    # wake, so writes made outside the app's loop (the tests') show up quickly.
    ctx.settings = dataclasses.replace(
        ctx.settings, sse_ping_seconds=0.3, fallback_poll_seconds=0.2
    )
    with _serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Live(url=url, ctx=ctx, http=http)


Until = Callable[[list[ServerSentEvent]], bool]


def _read(
    live: Live,
    until: Until,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    then: Callable[[], None] | None = None,
    raw: list[str] | None = None,
) -> list[ServerSentEvent]:
    """Open the stream, call ``then`` after ``ready``, read until ``until(events)``."""
    events: list[ServerSentEvent] = []
    deadline = time.monotonic() + 15
    with connect_sse(
        live.http, "GET", "/v1/events", headers=dict(headers or {}), params=params
    ) as source:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        if raw is not None:
            for line in source.response.iter_lines():
                raw.append(line)
                if until([]) or time.monotonic() > deadline:
                    return []
        for sse in source.iter_sse():
            events.append(sse)
            if sse.event == "ready" and then is not None:
                then()
            if until(events):
                return events
            assert time.monotonic() < deadline, [e.event for e in events]
    raise AssertionError("the stream ended")


def _tasks(events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if e.event == "task"]


def test_ready_first_then_the_state_changes_of_a_new_task(live: Live) -> None:
    earlier = live.submit()
    made: list[str] = []

    def changes() -> None:
        made.append(live.submit())
        assert live.http.post(f"/v1/tasks/{made[0]}/cancel").status_code == 200

    events = _read(live, lambda ev: len(_tasks(ev)) >= 2, then=changes)
    assert events[0].event == "ready"
    ready = json.loads(events[0].data)
    assert ready["account"] is None and int(events[0].id) == ready["last_event_id"] > 0
    tasks = _tasks(events)
    # Starts at the newest event: the earlier task's history is not replayed.
    assert earlier not in {t["task_id"] for t in tasks}
    assert [(t["task_id"], t["data"]["state"]) for t in tasks] == [
        (made[0], "queued"),
        (made[0], "cancelled"),
    ]
    ids = [int(e.id) for e in events if e.event == "task"]
    assert ids == [t["id"] for t in tasks] and ids == sorted(ids)


def test_resume_after_an_id_replays_what_was_missed(live: Live) -> None:
    first = live.submit()
    mark = live.http.get(f"/v1/tasks/{first}/events", params={"format": "json"}).json()[-1]["id"]
    second = live.submit()
    live.http.post(f"/v1/tasks/{first}/cancel")
    by_header = _read(live, lambda ev: len(_tasks(ev)) >= 2, headers={"Last-Event-ID": str(mark)})
    by_query = _read(live, lambda ev: len(_tasks(ev)) >= 2, params={"after": mark})
    for events in (by_header, by_query):
        assert events[0].event == "ready" and json.loads(events[0].data)["last_event_id"] == mark
        assert [(t["task_id"], t["data"]["state"]) for t in _tasks(events)] == [
            (second, "queued"),
            (first, "cancelled"),
        ]


def test_an_account_sees_its_own_tasks_and_public_ones_never_anothers(live: Live) -> None:
    alice = live.session_token(ALICE)
    made: dict[str, str] = {}

    def changes() -> None:
        made["bob"] = live.owned_task(BOB)
        made["alice"] = live.owned_task(ALICE)
        made["public"] = live.submit()

    as_alice = _read(
        live,
        lambda ev: len(_tasks(ev)) >= 2,
        headers={"Authorization": f"Bearer {alice}"},
        then=changes,
    )
    assert json.loads(as_alice[0].data)["account"] == ALICE
    assert [t["task_id"] for t in _tasks(as_alice)] == [made["alice"], made["public"]]

    mark = json.loads(as_alice[0].data)["last_event_id"]
    anonymous = _read(live, lambda ev: len(_tasks(ev)) >= 1, params={"after": mark})
    assert [t["task_id"] for t in _tasks(anonymous)] == [made["public"]]


def test_an_unknown_session_token_is_refused(live: Live) -> None:
    r = live.http.get("/v1/events", headers={"Authorization": "Bearer nobody"})
    assert r.status_code == 401 and "sign in again" in r.json()["detail"]


def test_bad_resume_points_and_kinds_are_refused(live: Live) -> None:
    r = live.http.get("/v1/events", headers={"Last-Event-ID": "seven"})
    assert r.status_code == 422 and r.json()["field"] == "Last-Event-ID"
    r = live.http.get("/v1/events", params={"after": -1})
    assert r.status_code == 422 and r.json()["field"] == "after"
    r = live.http.get("/v1/events", params={"kind": "gossip"})
    assert r.status_code == 422 and r.json()["field"].startswith("kind")


def test_other_kinds_only_when_asked(live: Live) -> None:
    task_id = live.submit()
    r = live.http.post("/v1/providers", json=_PROVIDER)
    pid, token = r.json()["provider"]["id"], r.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    lease = live.http.post(f"/v1/providers/{pid}/lease", params={"wait": 0}, headers=auth).json()
    assert lease["task"]["id"] == task_id
    mark = live.http.get(f"/v1/tasks/{task_id}/events", params={"format": "json"}).json()[-1]["id"]
    line = {"kind": "stdout", "data": {"text": "hello\n"}}
    live.http.post(f"/v1/leases/{lease['id']}/events", json={"events": [line]}, headers=auth)
    live.http.post(f"/v1/tasks/{task_id}/cancel")
    states = _read(live, lambda ev: len(_tasks(ev)) >= 1, params={"after": mark})
    assert [t["kind"] for t in _tasks(states)] == ["state"]
    both = _read(
        live, lambda ev: len(_tasks(ev)) >= 2, params={"after": mark, "kind": ["state", "stdout"]}
    )
    assert [t["kind"] for t in _tasks(both)] == ["stdout", "state"]


def test_a_provider_joining_and_going_offline_is_a_providers_event(live: Live) -> None:
    registered: list[str] = []

    def join() -> None:
        registered.append(live.http.post("/v1/providers", json=_PROVIDER).json()["provider"]["id"])

    events = _read(live, lambda ev: any(e.event == "providers" for e in ev), then=join)
    digest = json.loads(next(e for e in events if e.event == "providers").data)
    assert digest == [{"id": registered[0], "state": "idle", "tasks_done": 0}]

    # Silent for three heartbeats (offline_after_seconds), it is shown offline.
    live.ctx.settings = dataclasses.replace(live.ctx.settings, heartbeat_seconds=0.1)
    events = _read(
        live,
        lambda ev: any(
            e.event == "providers" and json.loads(e.data)[0]["state"] == "offline" for e in ev
        ),
    )
    assert events[0].event == "ready"


def test_comments_keep_an_idle_stream_alive(live: Live) -> None:
    raw: list[str] = []
    _read(live, lambda _: sum(line.startswith(":") for line in raw) >= 2, raw=raw)
    assert raw[0].startswith("id: ") or raw[0].startswith("event: ready")
