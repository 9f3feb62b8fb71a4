"""A lab on JupyterHub: the server extension sends the user's Hub token to the class service.

A unit test of the wiring (``_hub_token``, ``/gensyn/api/class``) through a
real Jupyter server, against a stand-in of the class service's routes on
loopback that checks the token as the Hub would. The real class service,
Hub and servers are in ``tests/hub/test_jupyterhub.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .server_helpers import body_of, serve

TOKENS = {"tok-teacher": "teacher", "tok-alice": "alice"}


def _student(user: str) -> dict[str, Any]:
    return {
        "user": user,
        "address": "0x" + "11" * 20,
        "budget_wei": 10**17,
        "spent_wei": 10**12,
        "held_wei": 0,
        "left_wei": 10**17 - 10**12,
        "tasks": [],
    }


class StandIn:
    """The class service's routes under ``/services/gensyn``; records what each call carried."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.app = FastAPI()
        app = self.app

        def who(request: Request) -> str | JSONResponse:
            header = request.headers.get("authorization", "")
            self.seen.append((request.url.path, header))
            user = TOKENS.get(header.removeprefix("token ").removeprefix("Bearer "))
            if user is None:
                detail = "JupyterHub does not know this token (expired, or revoked): log in again"
                return JSONResponse({"detail": detail, "field": None}, status_code=401)
            return user

        @app.get("/services/gensyn/")
        def index(request: Request) -> Any:
            user = who(request)
            if isinstance(user, JSONResponse):
                return user
            return {"user": user, "instructor": user == "teacher"}

        @app.get("/services/gensyn/api/me")
        def me(request: Request) -> Any:
            user = who(request)
            return user if isinstance(user, JSONResponse) else _student(user)

        @app.get("/services/gensyn/api/class")
        def class_view(request: Request) -> Any:
            user = who(request)
            if isinstance(user, JSONResponse):
                return user
            if user != "teacher":
                detail = f"{user} is not an instructor of this class"
                return JSONResponse({"detail": detail, "field": None}, status_code=403)
            return {"coordinator": "http://c", "students": [_student("alice")], "spent_wei": 1}

        @app.get("/services/gensyn/v1/tasks")
        def tasks(request: Request) -> Any:
            user = who(request)
            return user if isinstance(user, JSONResponse) else []

        @app.get("/v1/health")
        def health(request: Request) -> Any:  # a plain coordinator at the root
            self.seen.append((request.url.path, request.headers.get("authorization", "")))
            return {"status": "ok", "version": "0", "providers_online": 0}


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[StandIn, str]]:
    service = StandIn()
    with serve(service.app) as url:
        yield service, url


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, stand_in: tuple[StandIn, str]) -> tuple[StandIn, str]:
    """The environment JupyterHub's spawner gives a user's server (the teacher's token)."""
    service, url = stand_in
    service.seen.clear()
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok-teacher")
    monkeypatch.delenv("GENSYN_SESSION", raising=False)
    monkeypatch.setenv("GENSYN_NETWORK", f"{url}/services/gensyn")
    return service, url


async def _get(jp_fetch: Any, *path: str) -> tuple[int, Any]:
    response = await jp_fetch("gensyn", "api", *path, method="GET", raise_error=False)
    return response.code, body_of(response)


async def test_an_instructors_lab_reads_the_class_with_the_hub_token(
    jp_fetch: Any, hub_env: tuple[StandIn, str]
) -> None:
    service, url = hub_env
    status, body = await _get(jp_fetch, "class")
    assert status == 200, body
    assert body["service"] == f"{url}/services/gensyn"
    assert body["user"] == "teacher" and body["instructor"] is True
    assert body["me"]["budget_wei"] == 10**17
    assert [s["user"] for s in body["class"]["students"]] == ["alice"]
    assert {header for _, header in service.seen} == {"token tok-teacher"}
    # The Tasks section's read no longer fails with 401: the token goes there too.
    status, tasks = await _get(jp_fetch, "tasks")
    assert status == 200 and tasks == [], tasks


async def test_a_students_lab_gets_their_own_budget_and_no_class_view(
    jp_fetch: Any, hub_env: tuple[StandIn, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _ = hub_env
    monkeypatch.setenv("GENSYN_SESSION", "tok-alice")  # what the spawner sets, preferred
    status, body = await _get(jp_fetch, "class")
    assert status == 200, body
    assert body["user"] == "alice" and body["instructor"] is False
    assert body["class"] is None and body["me"]["user"] == "alice"
    assert "/services/gensyn/api/class" not in [path for path, _ in service.seen]


async def test_outside_jupyterhub_there_is_no_class_and_no_token_is_sent(
    jp_fetch: Any, hub_env: tuple[StandIn, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _ = hub_env
    monkeypatch.delenv("JUPYTERHUB_API_URL")
    status, body = await _get(jp_fetch, "class")
    assert (status, body) == (200, {"service": None})
    status, body = await _get(jp_fetch, "tasks")
    assert status == 401 and "log in again" in body["detail"]
    assert service.seen == [("/services/gensyn/v1/tasks", "")]


async def test_the_hub_token_goes_to_the_class_service_only(
    jp_fetch: Any, hub_env: tuple[StandIn, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, url = hub_env
    monkeypatch.setenv("GENSYN_NETWORK", url)  # a coordinator, not a Hub service
    status, body = await _get(jp_fetch, "class")
    assert (status, body) == (200, {"service": None})
    status, body = await _get(jp_fetch, "health")
    assert status == 200 and body["coordinator"]["status"] == "ok", body
    assert service.seen == [("/v1/health", "")]


async def test_a_token_the_hub_does_not_know_is_reported_in_the_class_services_words(
    jp_fetch: Any, hub_env: tuple[StandIn, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "revoked")
    status, body = await _get(jp_fetch, "class")
    assert status == 401, body
    assert body["detail"] == (
        "JupyterHub does not know this token (expired, or revoked): log in again"
    )
