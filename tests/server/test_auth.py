"""Who may call /gensyn/api: the Jupyter server's own authentication and XSRF check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from .server_helpers import Coordinator

Browser = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def browser(jp_serverapp: Any, http_server_client: Any, jp_base_url: str) -> Browser:
    """``async with browser() as client``: a client that behaves like a logged-in browser.

    Cookies only, no token header: it loads the login page (which sets the
    ``_xsrf`` cookie, as JupyterLab's page does) and logs in once with
    ``?token=`` (which sets the login cookie).
    """

    @asynccontextmanager
    async def open_browser() -> AsyncIterator[httpx.AsyncClient]:
        base = http_server_client.get_url(jp_base_url)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("login")).status_code == 200
            token = jp_serverapp.identity_provider.token
            r = await client.get("gensyn/api/health", params={"token": token})
            assert r.status_code == 200
            assert "_xsrf" in client.cookies
            assert any(name.startswith("username-") for name in client.cookies)
            yield client

    return open_browser


async def test_a_cookie_post_without_the_xsrf_header_is_refused(
    browser: Browser, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    async with browser() as client:
        r = await client.post(f"gensyn/api/tasks/{task_id}/cancel")
        assert r.status_code == 403
        assert r.json() == {
            "detail": "'_xsrf' argument missing from POST; "
            "a browser POST needs the X-XSRFToken header set to the _xsrf cookie",
            "field": None,
        }
        forged = {"X-XSRFToken": "forged"}
        r = await client.post(f"gensyn/api/tasks/{task_id}/cancel", headers=forged)
        assert r.status_code == 403
    assert coordinator.task(task_id)["state"] == "queued"


async def test_a_cookie_post_with_the_xsrf_header_cancels(
    browser: Browser, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    async with browser() as client:
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        r = await client.post(f"gensyn/api/tasks/{task_id}/cancel", headers=xsrf)
    assert r.status_code == 200, r.text
    assert r.json()["task"]["state"] == "cancelled"
    assert coordinator.task(task_id)["state"] == "cancelled"


async def test_a_page_of_another_origin_cannot_post(
    browser: Browser, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    async with browser() as client:
        headers = {"X-XSRFToken": client.cookies["_xsrf"], "Origin": "http://evil.example"}
        r = await client.post(f"gensyn/api/tasks/{task_id}/cancel", headers=headers)
    assert r.status_code == 404 and r.json()["field"] is None  # jupyter_server hides the route
    assert coordinator.task(task_id)["state"] == "queued"


async def test_a_cookie_get_needs_no_xsrf_header(browser: Browser, network: str) -> None:
    async with browser() as client:
        r = await client.get("gensyn/api/providers")
    assert r.status_code == 200 and isinstance(r.json(), list)


async def test_without_a_token_or_cookie_every_route_is_403(
    http_server_client: Any, jp_base_url: str, network: str, coordinator: Coordinator
) -> None:
    task_id = coordinator.submit()
    base = http_server_client.get_url(jp_base_url)
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        for method, path in [
            ("GET", "gensyn/api/health"),
            ("GET", "gensyn/api/tasks"),
            ("GET", f"gensyn/api/tasks/{task_id}"),
            ("GET", "gensyn/api/providers"),
            ("POST", f"gensyn/api/tasks/{task_id}/cancel"),
        ]:
            r = await anonymous.request(method, path)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["detail"] and r.json()["field"] is None
    assert coordinator.task(task_id)["state"] == "queued"
