"""Blocking calls to a coordinator (made in the wallet's threads), errors turned into ``ApiError``.

The async :class:`~._proxy.CoordinatorProxy` serves the read-only routes; the
wallet's work (sign-in, funding, orders) is blocking anyway (web3, the
``chain`` helpers take an ``httpx.Client``), so it runs in an executor and
reaches the coordinator with these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import ValidationError

from ..config import read_session_token
from ..protocol import CoordinatorError, Task
from ._errors import ApiError
from ._proxy import _json_of

__all__ = ["coordinator_errors", "fetch_task", "request_json", "session_headers", "task_of"]


def session_headers(network: str) -> dict[str, str] | None:
    """The session stored for ``network`` (the one the kernel submits with) as a header.

    Task reads are their owner's only, so the server reads with it; None where
    there is none (a free network: its tasks have no owner and anyone reads them).
    """
    token = read_session_token(network)
    return {"Authorization": f"Bearer {token}"} if token else None


@contextmanager
def coordinator_errors(network: str) -> Iterator[None]:
    """Turn what a blocking coordinator call raises into the extension's :class:`ApiError`.

    A 4xx the coordinator explains keeps its status, detail and field; an
    unreachable coordinator is 502, a slow one 504 (as for the async proxy).
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ApiError(
            504, f"the coordinator at {network} did not answer in time ({type(exc).__name__})"
        ) from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(502, f"cannot reach the coordinator at {network}: {reason}") from exc
    except CoordinatorError as exc:
        if 400 <= exc.status < 500:
            raise ApiError(exc.status, exc.detail, exc.field) from exc
        raise ApiError(
            502, f"the coordinator at {network} answered {exc.status}: {exc.detail}"
        ) from exc


def request_json(
    http: httpx.Client,
    network: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """``method`` ``network + path`` with ``http`` and return the JSON answer.

    Raises
    ------
    ApiError
        As :func:`coordinator_errors`, and 502 for an answer that is not a
        coordinator's JSON.
    """
    with coordinator_errors(network):
        response = http.request(method, f"{network}{path}", json=json, headers=headers)
    return _json_of(network, response)


def fetch_task(
    http: httpx.Client, network: str, task_id: str, headers: dict[str, str] | None = None
) -> Task:
    """The task as the coordinator knows it now (404 passed on, 502 for a malformed answer).

    Without ``headers``, a client that carries no session of its own (a
    signed-in link's does) reads with the session stored for ``network``.
    """
    if headers is None and "authorization" not in http.headers:
        headers = session_headers(network)
    body = request_json(http, network, "GET", f"/v1/tasks/{task_id}", headers=headers)
    return task_of(body, network)


def task_of(body: Any, network: str) -> Task:
    """A coordinator's answer as a :class:`Task` (502 when it is not one)."""
    try:
        return Task.model_validate(body)
    except ValidationError as exc:
        raise ApiError(
            502,
            f"the coordinator at {network} answered something that is not a task: "
            f"{exc.errors()[0]['msg']}",
        ) from exc
