"""The coordinator's API as a student sees it: ``<prefix>v1/...``, scoped to their account.

A student's kernel uses the class service as its network
(``GENSYN_NETWORK=<hub>/services/gensyn``), so ``%%gensyn_train`` works
unchanged. Every task and blob route needs the student's JupyterHub token;
the service reads, submits, cancels and moves blobs with the student's own
coordinator session (the coordinator shows an account only its own tasks
and blobs) and answers 404 for another account's task, as if it did not
exist. A new paid
task is approved here, at once, within the student's budget; one over it is
cancelled before any money moves and answered 402 with the reason.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from ._approval import approve_within_budget
from ._auth import Caller
from ._errors import ServiceError
from ._events import class_message, reword_event, reword_sse
from ._state import ServiceState, require_caller, service_state, signed_in_student

__all__ = ["gateway_router"]

_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_REQUEST_HEADERS = ("content-type", "content-length", "accept", "last-event-id")
_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "cache-control",
    "etag",
    "x-accel-buffering",
    "www-authenticate",
)

CallerDep = Annotated[Caller, Depends(require_caller)]
StateDep = Annotated[ServiceState, Depends(service_state)]


async def _open(
    state: ServiceState,
    request: Request,
    method: str,
    path: str,
    *,
    token: str | None = None,
    params: dict[str, str] | None = None,
    stream_body: bool = False,
    long_read: bool = False,
) -> httpx.Response:
    """Send one call to the coordinator, its answer still streaming; 502/504 when it is away."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in _REQUEST_HEADERS}
    if token:
        headers["authorization"] = f"Bearer {token}"
    timeout = state.settings.timeout_seconds
    outgoing = state.http.build_request(
        method,
        path,
        params=params if params is not None else dict(request.query_params),
        headers=headers,
        content=request.stream() if stream_body else None,
        timeout=httpx.Timeout(timeout, read=None) if long_read else httpx.Timeout(timeout),
    )
    try:
        return await state.http.send(outgoing, stream=True)
    except httpx.TimeoutException:
        raise ServiceError(504, "the class's coordinator did not answer in time") from None
    except httpx.TransportError as exc:
        raise ServiceError(502, f"cannot reach the class's coordinator ({exc})") from None


def _relay(upstream: httpx.Response, body: AsyncIterator[bytes] | None = None) -> Response:
    """The coordinator's answer, passed on as it streams in (``body`` replaces its bytes)."""
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in _RESPONSE_HEADERS}
    if body is not None:
        kept.pop("content-length", None)
    return StreamingResponse(
        body if body is not None else upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=kept,
        background=BackgroundTask(upstream.aclose),
    )


async def _forward(
    state: ServiceState,
    request: Request,
    method: str,
    path: str,
    *,
    token: str | None = None,
    params: dict[str, str] | None = None,
    stream_body: bool = False,
) -> Response:
    """Relay one call to the coordinator, streaming both ways."""
    upstream = await _open(
        state, request, method, path, token=token, params=params, stream_body=stream_body
    )
    return _relay(upstream)


async def _owned_task(state: ServiceState, caller: Caller, task_id: str) -> dict[str, Any]:
    """The task if it belongs to the caller's account; 404 otherwise (unknown or not theirs).

    Read with the student's own session (the coordinator shows a task to its
    owner only); a session the coordinator forgot is renewed once.
    """
    missing = ServiceError(404, f"task {task_id} not found among your tasks", "task_id")
    address = await anyio.to_thread.run_sync(state.keys.address, caller.name)
    if not _TASK_ID.match(task_id) or address is None:
        raise missing
    for renew in (False, True):
        student = await signed_in_student(state, caller, renew=renew)
        try:
            response = await state.http.get(
                f"/v1/tasks/{task_id}", headers={"authorization": f"Bearer {student.token}"}
            )
        except httpx.TimeoutException:
            raise ServiceError(504, "the class's coordinator did not answer in time") from None
        except httpx.TransportError as exc:
            raise ServiceError(502, f"cannot reach the class's coordinator ({exc})") from None
        if response.status_code != 401:
            break
    if response.status_code == 404:
        raise missing
    if response.status_code >= 400:
        raise ServiceError(502, f"the class's coordinator answered {response.status_code}")
    task: dict[str, Any] = response.json()
    if str(task.get("account") or "").lower() != address.lower():
        raise missing
    return task


def gateway_router(prefix: str) -> APIRouter:
    """The ``<prefix>v1/...`` routes (``prefix`` like ``/services/gensyn/``)."""
    router = APIRouter(prefix=prefix.rstrip("/") + "/v1")

    @router.get("/health")
    async def health(request: Request, state: StateDep) -> Response:
        return await _forward(state, request, "GET", "/v1/health")

    @router.get("/providers")
    async def providers(request: Request, state: StateDep) -> Response:
        return await _forward(state, request, "GET", "/v1/providers")

    @router.get("/chain")
    async def chain(request: Request, state: StateDep) -> Response:
        return await _forward(state, request, "GET", "/v1/chain")

    @router.api_route("/blobs/{sha}", methods=["GET", "HEAD", "PUT"])
    async def blob(sha: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
        if not _SHA.match(sha):
            raise ServiceError(422, "a blob is named by its sha256 (64 lowercase hex)", "sha")
        stream_body = request.method == "PUT"
        student = await signed_in_student(state, caller)  # the blob is the student's
        return await _forward(
            state,
            request,
            request.method,
            f"/v1/blobs/{sha}",
            token=student.token,
            stream_body=stream_body,
        )

    @router.post("/tasks")
    async def submit(request: Request, state: StateDep, caller: CallerDep) -> Response:
        body = await request.body()
        for renew in (False, True):  # a coordinator that forgot the session: sign in again
            student = await signed_in_student(state, caller, renew=renew)
            try:
                created = await state.http.post(
                    "/v1/tasks",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "authorization": f"Bearer {student.token}",
                    },
                )
            except httpx.HTTPError as exc:
                raise ServiceError(502, f"cannot reach the class's coordinator ({exc})") from None
            if created.status_code != 401:
                break
        if created.status_code != 201:
            kind = created.headers.get("content-type", "application/json")
            return Response(created.content, status_code=created.status_code, media_type=kind)
        task: dict[str, Any] = created.json()
        if not task.get("payment"):  # a free network: nothing to approve
            return JSONResponse(task, status_code=201)
        settings = state.settings
        approval = await anyio.to_thread.run_sync(
            lambda: approve_within_budget(
                student,
                task,
                ledger=state.ledger,
                budget_wei=settings.budget_for(caller.name),
                per_task_wei=settings.per_task_wei,
            )
        )
        if approval.task is not None:
            return JSONResponse(approval.task, status_code=201)
        with contextlib.suppress(httpx.HTTPError):  # unfunded: it would only wait, unpaid
            await state.http.post(
                f"/v1/tasks/{task['id']}/cancel",
                headers={"authorization": f"Bearer {student.token}"},
            )
        if approval.refused is not None:
            raise ServiceError(
                402,
                f"{approval.refused}. Task {task['id']} was cancelled; nothing was paid.",
                "max_seconds",
            )
        raise ServiceError(
            502,
            f"the class service could not fund task {task['id']} ({approval.failed}); "
            "it was cancelled and nothing was paid: tell your instructor",
        )

    @router.get("/tasks")
    async def list_tasks(request: Request, state: StateDep, caller: CallerDep) -> Response:
        address = await anyio.to_thread.run_sync(state.keys.address, caller.name)
        if address is None:
            return JSONResponse([])
        params = {k: v for k, v in request.query_params.items() if k in ("state", "limit")}
        params["account"] = address
        student = await signed_in_student(state, caller)
        return await _forward(
            state, request, "GET", "/v1/tasks", token=student.token, params=params
        )

    @router.get("/tasks/{task_id}")
    async def read_task(task_id: str, state: StateDep, caller: CallerDep) -> Response:
        return JSONResponse(await _owned_task(state, caller, task_id))

    @router.get("/tasks/{task_id}/events")
    async def events(
        task_id: str, request: Request, state: StateDep, caller: CallerDep
    ) -> Response:
        message = class_message(await _owned_task(state, caller, task_id))
        student = await signed_in_student(state, caller)
        upstream = await _open(
            state,
            request,
            "GET",
            f"/v1/tasks/{task_id}/events",
            token=student.token,
            long_read=True,
        )
        kind = upstream.headers.get("content-type", "")
        if upstream.status_code == 200 and kind.startswith("text/event-stream"):
            return _relay(upstream, reword_sse(upstream.aiter_lines(), message))
        if upstream.status_code == 200 and kind.startswith("application/json"):
            try:
                events = json.loads(await upstream.aread())
            finally:
                await upstream.aclose()
            return JSONResponse([reword_event(e, message) for e in events])
        return _relay(upstream)

    @router.post("/tasks/{task_id}/cancel")
    async def cancel(
        task_id: str, request: Request, state: StateDep, caller: CallerDep
    ) -> Response:
        await _owned_task(state, caller, task_id)
        student = await signed_in_student(state, caller)
        return await _forward(
            state, request, "POST", f"/v1/tasks/{task_id}/cancel", token=student.token
        )

    @router.post("/tasks/{task_id}/order")
    async def order(task_id: str, caller: CallerDep) -> Response:
        raise ServiceError(
            403,
            "the class service approves your tasks itself, within the budget your instructor "
            "set: there is nothing to sign",
        )

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
    async def elsewhere(rest: str) -> Response:
        raise ServiceError(404, f"/v1/{rest} is not available through the class service")

    return router
