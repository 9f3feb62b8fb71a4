"""The class service's own routes: who am I, the class view, and the browser's login.

``GET <prefix>`` and ``<prefix>api/me``: the caller's account, budget and
tasks. ``GET <prefix>api/class``: every student's, for instructors (403 for
anyone else); ``POST <prefix>api/class/students/<user>``: an instructor makes
and funds a student's account ahead of their first task. A browser without a
login is sent through the Hub's OAuth flow and comes back to the page it
asked for.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ..protocol import CoordinatorError
from ._auth import Caller
from ._errors import ServiceError
from ._state import ServiceState, service_state, signed_in_student
from ._views import student_view

__all__ = ["class_router"]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def _caller_or_login(request: Request) -> Caller | Response:
    state = service_state(request)
    try:
        caller = await state.identity.caller(request)
    except ServiceError as exc:
        if exc.status == 401 and _wants_html(request):
            return state.identity.login_redirect(request)
        raise
    if caller is not None:
        return caller
    if _wants_html(request):
        return state.identity.login_redirect(request)
    raise ServiceError(401, "log in to JupyterHub, or send your token (Authorization: Bearer)")


def _view(state: ServiceState, user: str) -> dict[str, Any]:
    def session(renew: bool) -> str:  # the student's own: the coordinator shows it their tasks
        return state.roster.get(user, renew=renew).token

    try:
        return student_view(
            user=user,
            address=state.keys.address(user),
            budget_wei=state.settings.budget_for(user),
            ledger=state.ledger,
            http=state.sync_http,
            session=session,
        )
    except httpx.HTTPError as exc:
        raise ServiceError(502, f"cannot reach the class's coordinator ({exc})") from None
    except CoordinatorError as exc:
        raise ServiceError(502, f"the class's coordinator refused: {exc.detail}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise ServiceError(
            502, f"cannot sign {user} in to the class's coordinator: {exc}"
        ) from None


def _class(state: ServiceState) -> dict[str, Any]:
    overrides: dict[str, int] = state.settings.budget_overrides
    users = sorted(set(state.keys.users()) | set(state.ledger.users()) | set(overrides))
    students = [_view(state, user) for user in users]
    return {
        "coordinator": state.roster.coordinator_url,
        "default_budget_wei": state.settings.budget_wei,
        "per_task_wei": state.settings.per_task_wei,
        "students": students,
        "spent_wei": sum(s["spent_wei"] for s in students),
        "held_wei": sum(s["held_wei"] for s in students),
    }


def _require_instructor(state: ServiceState, caller: Caller) -> None:
    if not state.identity.is_instructor(caller):
        raise ServiceError(
            403,
            f"{caller.name} is not an instructor of this class: the class view is for "
            "JupyterHub admins and c.GensynClass.instructors",
        )


def _enrolled(state: ServiceState, user: str) -> dict[str, Any]:
    """``user``'s view, with the account's balance on chain now."""
    view = _view(state, user)
    student = state.roster.get(user)
    view["balance_wei"] = int(student.signer.market.w3.eth.get_balance(student.account.address))
    return view


def class_router(prefix: str) -> APIRouter:
    """``<prefix>`` and its ``api/me``, ``api/class[/students/<user>]``, ``oauth_callback``."""
    base = prefix.rstrip("/")
    router = APIRouter()

    @router.get(base + "/")
    async def index(request: Request) -> Response:
        found = await _caller_or_login(request)
        if isinstance(found, Response):
            return found
        state = service_state(request)
        return JSONResponse(
            {
                "user": found.name,
                "instructor": state.identity.is_instructor(found),
                "me": f"{base}/api/me",
                "class": f"{base}/api/class",
                "network": f"{base}",
            }
        )

    @router.get(base)
    async def bare(request: Request) -> Response:
        return RedirectResponse(base + "/", status_code=302)

    @router.get(base + "/api/me")
    async def me(request: Request) -> Response:
        found = await _caller_or_login(request)
        if isinstance(found, Response):
            return found
        state = service_state(request)
        return JSONResponse(await anyio.to_thread.run_sync(_view, state, found.name))

    @router.get(base + "/api/class")
    async def class_view(request: Request) -> Response:
        found = await _caller_or_login(request)
        if isinstance(found, Response):
            return found
        state = service_state(request)
        _require_instructor(state, found)
        return JSONResponse(await anyio.to_thread.run_sync(_class, state))

    @router.post(base + "/api/class/students/{user}")
    async def enroll(user: str, request: Request) -> Response:
        """Make ``user``'s account and fund it from the faucet now (instructors, by token)."""
        state = service_state(request)
        caller = await state.identity.caller(request, cookie=False)
        if caller is None:
            raise ServiceError(401, "send an instructor's JupyterHub token (Authorization: token)")
        _require_instructor(state, caller)
        if not user.strip() or len(user) > 255:
            raise ServiceError(422, f"{user!r} is not a JupyterHub user name", "user")
        await signed_in_student(state, Caller(name=user, admin=False))
        try:
            view = await anyio.to_thread.run_sync(_enrolled, state, user)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            raise ServiceError(502, f"cannot read {user}'s account on chain: {exc}") from None
        return JSONResponse(view)

    @router.get(base + "/oauth_callback")
    async def oauth_callback(request: Request) -> Response:
        return await service_state(request).identity.oauth_callback(request)

    return router
