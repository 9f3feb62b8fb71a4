"""The kernel's HTTP client of the coordinator. The kernel reaches it only this way."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any, get_args

import httpx

from ..config import read_session_token
from ..protocol import (
    BlobClient,
    ChainInfo,
    CoordinatorError,
    Event,
    EventKind,
    Provider,
    Task,
    TaskSpec,
    TaskState,
    raise_for_error,
)

__all__ = ["CoordinatorClient"]

_KINDS = frozenset(get_args(EventKind))
_RECONNECTS = 40
_MAX_BACKOFF = 2.0


class _SessionAuth(httpx.Auth):
    """Sends the account's session token (if any) with every call that carries none.

    The coordinator reads it where a route needs an account; a network that
    scopes every call to an account (the JupyterHub class service, which
    gets the student's Hub token this way) needs it on reads too.
    """

    def __init__(self, network: str) -> None:
        self._network = network

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" not in request.headers:
            token = read_session_token(self._network)
            if token:
                request.headers["Authorization"] = f"Bearer {token}"
        yield request


class _Reconnecting(httpx.HTTPTransport):
    """Tries a call again while the coordinator refuses connections (restarting).

    Only failures to connect are retried (nothing was sent, so any call is safe
    to repeat), with backoff, for ``patience`` seconds; then the error stands.
    """

    def __init__(self, *, patience: float = 20.0) -> None:
        super().__init__()
        self._patience = patience

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self._patience
        delay = 0.1
        while True:
            try:
                return super().handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)


class CoordinatorClient:
    """Task calls and the event stream, over one kept-alive ``httpx.Client``.

    Parameters
    ----------
    base_url
        The network's coordinator, e.g. ``http://127.0.0.1:8765``.
    transport
        For tests: an ``httpx.MockTransport`` or ``ASGITransport``.
    """

    def __init__(
        self, *, base_url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport if transport is not None else _Reconnecting(),
            auth=_SessionAuth(self.base_url),
        )
        self.blobs = BlobClient(client=self._http)

    def health(self) -> dict[str, Any]:
        response = self._http.get("/v1/health", timeout=5.0)
        raise_for_error(response)
        body: dict[str, Any] = response.json()
        return body

    def chain_info(self) -> ChainInfo | None:
        """The network's chain (RPC URL, market, chain id); None on a free network."""
        response = self._http.get("/v1/chain", timeout=5.0)
        if response.status_code == 404:
            return None
        raise_for_error(response)
        return ChainInfo.model_validate(response.json())

    def _session_headers(self) -> dict[str, str]:
        """The account's session token (written by the signer or the panel), if any.

        A session token is not a key: it lets the kernel submit tasks that the
        account's wallet must still approve and fund.
        """
        token = read_session_token(self.base_url)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def create_task(self, spec: TaskSpec) -> Task:
        response = self._http.post(
            "/v1/tasks", json=spec.model_dump(mode="json"), headers=self._session_headers()
        )
        raise_for_error(response)
        return Task.model_validate(response.json())

    def get_task(self, task_id: str) -> Task:
        response = self._http.get(f"/v1/tasks/{task_id}")
        raise_for_error(response)
        return Task.model_validate(response.json())

    def list_tasks(self, *, limit: int = 20) -> list[Task]:
        response = self._http.get("/v1/tasks", params={"limit": limit})
        raise_for_error(response)
        return [Task.model_validate(item) for item in response.json()]

    def list_providers(self) -> list[Provider]:
        response = self._http.get("/v1/providers")
        raise_for_error(response)
        return [Provider.model_validate(item) for item in response.json()]

    def cancel(self, task_id: str) -> Task:
        response = self._http.post(f"/v1/tasks/{task_id}/cancel", headers=self._session_headers())
        raise_for_error(response)
        return Task.model_validate(response.json())

    def events(self, task_id: str, *, after: int = 0) -> Iterator[Event]:
        """Yield the task's events from ``after`` on, until the terminal state.

        Reconnects with ``Last-Event-ID`` when the stream drops (bounded
        retries with backoff), so no event is lost or seen twice.
        """
        from httpx_sse import connect_sse

        last = after
        failures = 0
        while True:
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    f"/v1/tasks/{task_id}/events",
                    headers={"Last-Event-ID": str(last)},
                    timeout=httpx.Timeout(30.0, read=None),
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        raise_for_error(source.response)
                    for sse in source.iter_sse():
                        if not sse.data or sse.event not in _KINDS:
                            continue
                        event = Event.model_validate_json(sse.data)
                        if event.id <= last:
                            continue
                        last = event.id
                        failures = 0
                        yield event
                        if event.kind == "state" and TaskState(event.data["state"]).terminal:
                            return
            except (httpx.TransportError, httpx_sse_error()) as exc:
                failures += 1
                if failures > _RECONNECTS:
                    raise CoordinatorError(
                        status=503,
                        detail=f"lost the event stream of {task_id} ({exc}); "
                        "the task goes on without this kernel watching it",
                    ) from exc
            time.sleep(min(_MAX_BACKOFF, 0.05 * 2 ** min(failures, 6)))

    def close(self) -> None:
        self._http.close()


def httpx_sse_error() -> type[Exception]:
    from httpx_sse import SSEError

    return SSEError
