"""``GET /gensyn/api/events``: the coordinator's change stream through a real Jupyter server.

Streams are read with ``jp_fetch``'s ``streaming_callback`` (token header, as
a script would) and with a cookie-only client (as the panel's ``EventSource``
does). Account scoping is tested on a coordinator of this module whose
database the test writes (sessions and paid-network tasks without a chain).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from gensyn_jupyter.config import write_session
from gensyn_jupyter.coordinator import create_app
from gensyn_jupyter.coordinator._context import Context
from gensyn_jupyter.coordinator._db import SessionRow, TaskRow
from gensyn_jupyter.coordinator._events import append_event
from gensyn_jupyter.coordinator._ids import hash_token

from .server_helpers import Coordinator, body_of, serve

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture  # type: ignore[no-redef]  # replaces the conftest's: quick keep-alives
def jp_server_config(allowed_alias: str, keystore_dir: pathlib.Path) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"gensyn_jupyter": True}},
            "GensynServer": {
                "allowed_networks": [allowed_alias],
                "keystore_dir": str(keystore_dir),
                "keystore_scrypt_n": 2**10,
                "events_heartbeat_seconds": 0.5,
            },
        }
    )


@dataclass
class Scoped:
    """A coordinator whose database the test writes: sessions and account-owned tasks."""

    url: str
    ctx: Context

    def session(self, account: str) -> str:
        token = f"session-{account}-{time.monotonic_ns()}"
        with self.ctx.db.write() as s:
            s.add(SessionRow(token_hash=hash_token(token), address=account, expires_at=2e9))
        write_session(self.url, token=token, address=account, expires_at=2e9)
        return token

    def task_of(self, account: str) -> str:
        task_id = f"t-{hashlib.sha256(str(time.monotonic_ns()).encode()).hexdigest()[:10]}"
        now = time.time()
        with self.ctx.db.write() as s:
            s.add(
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
            s.flush()
            append_event(s, task_id, "state", {"state": "awaiting_approval"}, now)
        return task_id


@pytest.fixture
def scoped(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scoped]:
    """Request it before the Jupyter server, so it stops after the server's relays closed."""
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'scoped.sqlite'}", blob_dir=tmp_path / "blobs"
    )
    with serve(app) as url:
        monkeypatch.setenv("GENSYN_NETWORK", url)
        yield Scoped(url=url, ctx=app.state.coordinator)


class Reader:
    """The SSE messages of a streamed body, as dicts of their fields (comments apart)."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []
        self.comments: list[str] = []
        self._buffer = ""

    def feed(self, text: str) -> None:
        self._buffer += text.replace("\r\n", "\n")
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
            if fields:
                self.events.append(fields)

    def of(self, name: str) -> list[Any]:
        return [json.loads(e["data"]) for e in self.events if e.get("event") == name]


async def _until(reader: Reader, done: Callable[[Reader], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not done(reader):
        assert time.monotonic() < deadline, (reader.events, reader.comments)
        await asyncio.sleep(0.05)


@pytest.fixture
def cookie_client(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str
) -> Callable[[], Any]:
    """``async with cookie_client() as client``: logged in by cookie, like the panel's page.

    On the way out it waits until the server closed its relays: a coordinator
    stopped by a (synchronous) fixture would otherwise wait for their streams.
    """
    [extension] = jp_serverapp.extension_manager.extension_apps["gensyn_jupyter"]

    @asynccontextmanager
    async def open_client() -> AsyncIterator[httpx.AsyncClient]:
        base = http_server_client.get_url(jp_base_url)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            token = jp_serverapp.identity_provider.token
            assert (await client.get("gensyn/api/health", params={"token": token})).status_code
            yield client
        deadline = time.monotonic() + 10
        while extension.relays and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not extension.relays, "a relay outlived its browser"

    return open_client


@asynccontextmanager
async def _stream(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Reader]:
    reader = Reader()
    async with client.stream(
        "GET", "gensyn/api/events", headers=headers, params=params or None
    ) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["Cache-Control"].startswith("no-cache")

        async def pump() -> None:
            async for text in r.aiter_text():
                reader.feed(text)

        task = asyncio.create_task(pump())
        try:
            yield reader
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# ----------------------------------------------------------------------------- tests


async def test_without_a_token_or_cookie_the_stream_is_403(jp_fetch: Any, network: str) -> None:
    r = await jp_fetch("gensyn", "api", "events", headers={"Authorization": ""}, raise_error=False)
    assert r.code == 403
    assert r.headers["Content-Type"].startswith("application/json")
    assert body_of(r)["detail"].startswith("not authenticated")


async def test_a_task_change_arrives_as_an_event(
    jp_fetch: Any, network: str, coordinator: Coordinator
) -> None:
    reader = Reader()
    submitted: list[str] = []

    def on_chunk(chunk: bytes) -> None:
        reader.feed(chunk.decode())
        if reader.of("ready") and not submitted:
            submitted.append(coordinator.submit())  # after the stream is open

    # The stream never ends: the fetch stops at its request timeout, with what came.
    with pytest.raises(HTTPClientError) as stopped:
        await jp_fetch("gensyn", "api", "events", streaming_callback=on_chunk, request_timeout=5)
    assert stopped.value.code == 599  # timeout, not an HTTP error
    assert reader.events[0]["event"] == "ready" and reader.of("ready")[0]["account"] is None
    [event] = [t for t in reader.of("task") if t["task_id"] == submitted[0]]
    assert event["kind"] == "state" and event["data"]["state"] == "queued"
    assert reader.events[-1]["id"] == str(event["id"])


async def test_the_panel_reads_it_by_cookie_and_resumes_after_an_id(
    cookie_client: Any, network: str, coordinator: Coordinator
) -> None:
    first = coordinator.submit()
    async with cookie_client() as client, _stream(client) as reader:
        await _until(reader, lambda r: bool(r.of("ready")))
        mark = reader.of("ready")[0]["last_event_id"]
    second = coordinator.submit()
    coordinator.http.post(f"/v1/tasks/{first}/cancel")
    expected = [(second, "queued"), (first, "cancelled")]

    def seen(r: Reader) -> list[tuple[str, str]]:
        return [(t["task_id"], t["data"]["state"]) for t in r.of("task")]

    async with cookie_client() as client:
        for how in ({"headers": {"Last-Event-ID": str(mark)}}, {"after": mark}):
            async with _stream(client, **how) as reader:
                await _until(reader, lambda r: len(seen(r)) >= 2)
                assert seen(reader) == expected


async def test_an_idle_stream_sends_keep_alive_comments(cookie_client: Any, network: str) -> None:
    async with cookie_client() as client, _stream(client) as reader:
        await _until(reader, lambda r: r.comments.count("keep-alive") >= 2, timeout=10)


async def test_provider_changes_arrive(
    cookie_client: Any, network: str, coordinator: Coordinator
) -> None:
    async with cookie_client() as client, _stream(client) as reader:
        await _until(reader, lambda r: bool(r.of("ready")))
        pid, _ = coordinator.register("relay-box")
        await _until(reader, lambda r: any(pid in {p["id"] for p in d} for d in r.of("providers")))


async def test_the_stream_carries_the_stored_sessions_account_and_follows_a_new_one(
    scoped: Scoped, cookie_client: Any
) -> None:
    scoped.session(ALICE)
    async with cookie_client() as client, _stream(client) as reader:
        await _until(reader, lambda r: bool(r.of("ready")))
        assert reader.of("ready")[0]["account"] == ALICE
        bobs, alices = scoped.task_of(BOB), scoped.task_of(ALICE)
        await _until(reader, lambda r: alices in {t["task_id"] for t in r.of("task")})
        assert bobs not in {t["task_id"] for t in reader.of("task")}

        scoped.session(BOB)  # the wallet signed in as another account
        await _until(reader, lambda r: [x["account"] for x in r.of("ready")] == [ALICE, BOB])
        later = scoped.task_of(BOB)
        await _until(reader, lambda r: later in {t["task_id"] for t in r.of("task")})


async def test_a_session_the_coordinator_refuses_falls_back_to_public_changes(
    scoped: Scoped, cookie_client: Any
) -> None:
    write_session(scoped.url, token="forgotten", address=ALICE, expires_at=2e9)
    async with cookie_client() as client, _stream(client) as reader:
        await _until(reader, lambda r: bool(r.of("ready")))
        assert reader.of("ready")[0]["account"] is None


async def test_errors_before_the_stream_are_json(
    jp_fetch: Any, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def get(**kwargs: Any) -> tuple[int, Any]:
        r = await jp_fetch("gensyn", "api", "events", raise_error=False, **kwargs)
        assert r.headers["Content-Type"].startswith("application/json")
        return r.code, body_of(r)

    status, body = await get()
    assert status == 503 and "GENSYN_NETWORK" in body["detail"]
    monkeypatch.setenv("GENSYN_NETWORK", dead_url)
    status, body = await get()
    assert status == 502 and f"cannot reach the coordinator at {dead_url}" in body["detail"]
    status, body = await get(params={"after": "x"})
    assert status == 422 and body["field"] == "after"
    status, body = await get(headers={"Last-Event-ID": "-3"})
    assert status == 422 and body["field"] == "Last-Event-ID"
    status, body = await get(params={"network": "http://evil.example"})
    assert status == 403 and body["field"] == "network"
