"""The /gensyn/api routes against a real coordinator, through a real Jupyter server."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .server_helpers import Coordinator, body_of, write_devnet_state

Api = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
def api(jp_fetch: Any) -> Api:
    """``await api("tasks", method=..., body=..., params=...)`` → (status, JSON body)."""

    async def call(
        *path: str,
        method: str = "GET",
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "raise_error": False}
        if method == "POST":
            kwargs["body"] = "" if body is None else json.dumps(body)
        response = await jp_fetch("gensyn", "api", *path, params=params, **kwargs)
        assert response.headers["Content-Type"].startswith("application/json")
        return response.code, body_of(response)

    return call


# --- health ----------------------------------------------------------------------------


async def test_health_names_the_network_and_relays_the_coordinators_report(
    api: Api, network: str
) -> None:
    status, body = await api("health")
    assert status == 200
    assert body["network"] == network and body["source"] == "GENSYN_NETWORK"
    assert body["error"] is None
    assert body["coordinator"]["status"] == "ok" and "providers_online" in body["coordinator"]


async def test_health_is_200_when_the_coordinator_is_down(
    api: Api, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENSYN_NETWORK", dead_url)
    status, body = await api("health")
    assert status == 200
    assert body["network"] == dead_url and body["coordinator"] is None
    assert f"cannot reach the coordinator at {dead_url}" in body["error"]


async def test_without_any_network_health_says_how_to_get_one_and_calls_answer_503(
    api: Api,
) -> None:
    status, body = await api("health")
    assert status == 200 and body["network"] is None and body["coordinator"] is None
    assert body["error"] == (
        "no gensyn network configured and no devnet running; "
        "run %gensyn devnet up or set GENSYN_NETWORK"
    )
    status, body = await api("tasks")
    assert status == 503 and body == {"detail": body["detail"], "field": None}
    assert "run %gensyn devnet up or set GENSYN_NETWORK" in body["detail"]


# --- network resolution ----------------------------------------------------------------


async def test_a_devnet_started_after_the_server_is_found(
    api: Api, live_url: str, gensyn_home: pathlib.Path, coordinator: Coordinator
) -> None:
    assert (await api("tasks"))[0] == 503
    write_devnet_state(gensyn_home, live_url)
    task_id = coordinator.submit()
    status, body = await api("tasks", task_id)
    assert status == 200 and body["id"] == task_id
    status, body = await api("health")
    assert body["network"] == live_url and body["source"] == "devnet"


async def test_a_devnet_whose_process_is_gone_is_not_used(
    api: Api, live_url: str, gensyn_home: pathlib.Path
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    write_devnet_state(gensyn_home, live_url, pid=gone.pid)
    status, body = await api("tasks")
    assert status == 503 and "no devnet running" in body["detail"]


async def test_config_toml_names_the_network(
    api: Api, live_url: str, gensyn_home: pathlib.Path
) -> None:
    (gensyn_home / "config.toml").write_text(f'network = "{live_url}/"\n')
    status, body = await api("health")
    assert status == 200 and body["network"] == live_url and body["source"] == "config.toml"


async def test_an_unreadable_config_toml_is_explained(api: Api, gensyn_home: pathlib.Path) -> None:
    (gensyn_home / "config.toml").write_text("network = \n")
    status, body = await api("tasks")
    assert status == 503 and "is not valid TOML" in body["detail"]


async def test_a_network_not_allowed_is_refused_before_any_request_is_sent(
    api: Api, network: str, dead_url: str
) -> None:
    expected = {
        "detail": f"network {dead_url} is not allowed; add it to c.GensynServer.allowed_networks",
        "field": "network",
    }
    assert await api("tasks", params={"network": dead_url}) == (403, expected)
    assert await api("health", params={"network": dead_url + "/"}) == (403, expected)
    reply = await api("tasks", "t-0123456789", "cancel", method="POST", body={"network": dead_url})
    assert reply == (403, expected)


async def test_a_network_on_the_allow_list_is_reached(
    api: Api, live_url: str, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENSYN_NETWORK", dead_url)
    status, body = await api("health", params={"network": live_url})
    assert status == 200 and body["network"] == live_url and body["source"] == "request"
    assert body["coordinator"]["status"] == "ok"
    # The configured network itself may always be named.
    status, body = await api("health", params={"network": dead_url})
    assert status == 200 and body["network"] == dead_url and body["error"]


async def test_the_devnet_may_be_named_while_another_network_is_configured(
    api: Api,
    coordinator: Coordinator,
    dead_url: str,
    gensyn_home: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alias = coordinator.http.base_url.copy_with(host="localhost")
    devnet = str(alias).rstrip("/")
    write_devnet_state(gensyn_home, devnet)
    monkeypatch.setenv("GENSYN_NETWORK", dead_url)
    task_id = coordinator.submit()
    status, body = await api("tasks", task_id, "cancel", method="POST", body={"network": devnet})
    assert status == 200, body
    assert body["task"]["state"] == "cancelled"


# --- tasks -----------------------------------------------------------------------------


async def test_tasks_lists_newest_first_within_the_limit(
    api: Api, network: str, coordinator: Coordinator
) -> None:
    ids = [coordinator.submit() for _ in range(3)]
    status, body = await api("tasks", params={"limit": 2})
    assert status == 200
    assert [t["id"] for t in body] == ids[::-1][:2]
    status, body = await api("tasks", params={"state": "queued", "limit": 1000})
    assert status == 200 and set(ids) <= {t["id"] for t in body}


async def test_a_bad_limit_names_the_field(api: Api, network: str) -> None:
    status, body = await api("tasks", params={"limit": "many"})
    assert status == 422 and body["field"] == "limit" and "'many'" in body["detail"]
    status, body = await api("tasks", params={"limit": 0})  # the coordinator's own check
    assert status == 422 and body["field"] == "limit"


async def test_a_task_is_returned_and_an_unknown_one_is_404(
    api: Api, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    status, body = await api("tasks", task_id)
    assert status == 200 and body["id"] == task_id and body["state"] == "queued"
    status, body = await api("tasks", "t-ffffffffff")
    assert status == 404 and "t-ffffffffff" in body["detail"]
    status, body = await api("tasks", "..%2Fproviders")
    assert status == 404


async def test_cancel_cancels_the_task_on_the_coordinator(
    api: Api, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    status, body = await api("tasks", task_id, "cancel", method="POST")
    assert status == 200 and set(body) == {"task"}
    assert body["task"]["id"] == task_id and body["task"]["state"] == "cancelled"
    assert coordinator.task(task_id)["state"] == "cancelled"
    # Cancelling again is harmless.
    status, body = await api("tasks", task_id, "cancel", method="POST", body={})
    assert status == 200 and body["task"]["state"] == "cancelled"


async def test_cancel_of_a_settled_task_is_409_with_the_coordinators_reason(
    api: Api, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    coordinator.settle(task_id)
    direct = coordinator.http.post(f"/v1/tasks/{task_id}/cancel")
    assert direct.status_code == 409
    status, body = await api("tasks", task_id, "cancel", method="POST")
    assert status == 409 and body["detail"] == direct.json()["detail"]
    assert coordinator.task(task_id)["state"] == "settled"


async def test_cancel_of_an_unknown_task_is_404(api: Api, network: str) -> None:
    status, body = await api("tasks", "t-0000000000", "cancel", method="POST")
    assert status == 404 and "t-0000000000" in body["detail"]


async def test_cancel_while_the_coordinator_is_down_is_502_naming_it(
    api: Api, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENSYN_NETWORK", dead_url)
    status, body = await api("tasks", "t-0123456789", "cancel", method="POST")
    assert status == 502 and body["field"] is None
    assert body["detail"].startswith(f"cannot reach the coordinator at {dead_url}")


async def test_a_coordinator_that_does_not_answer_is_504_after_the_timeout(
    api: Api, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    extension = jp_serverapp.extension_manager.extension_points["gensyn_jupyter"].app
    monkeypatch.setattr(extension.proxy, "timeout", 0.3)
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("GENSYN_NETWORK", url)
        start = time.monotonic()
        status, body = await api("tasks")
    assert status == 504 and body["detail"].startswith(f"the coordinator at {url} did not answer")
    assert time.monotonic() - start < 5


async def test_cancel_refuses_a_malformed_body(api: Api, network: str, jp_fetch: Any) -> None:
    r = await jp_fetch(
        "gensyn",
        "api",
        "tasks",
        "t-0123456789",
        "cancel",
        method="POST",
        body="{",
        raise_error=False,
    )
    assert r.code == 400 and "not JSON" in body_of(r)["detail"]
    status, body = await api("tasks", "t-0123456789", "cancel", method="POST", body={"x": 1})
    assert status == 422 and body["field"] == "x"


# --- providers and the rest ------------------------------------------------------------


async def test_providers_lists_registered_providers(
    api: Api, network: str, coordinator: Coordinator
) -> None:
    provider_id, _ = coordinator.register("lister")
    status, body = await api("providers")
    assert status == 200
    listed = {p["id"]: p for p in body}
    assert listed[provider_id]["info"]["name"] == "lister"
    assert listed[provider_id]["state"] == "idle"


async def test_unknown_routes_and_methods_answer_json(api: Api, network: str) -> None:
    status, body = await api("nothing-here")
    assert status == 404 and body["detail"].endswith("/gensyn/api/nothing-here")
    status, body = await api("health", method="POST")
    assert status == 405 and body["field"] is None
