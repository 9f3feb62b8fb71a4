"""The ``/gensyn/api/...`` routes: JSON in, JSON out, every error ``{"detail", "field"}``."""

from __future__ import annotations

import json
import re
from http.client import responses
from typing import Any, Protocol

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from pydantic import TypeAdapter, ValidationError
from tornado import web

from ..protocol import Provider, Task
from ._calls import session_headers
from ._errors import ApiError
from ._network import Network
from ._origin import task_with_origin
from ._proxy import CoordinatorProxy

__all__ = ["API_PREFIX", "Backend", "handlers"]

API_PREFIX = "/gensyn/api"

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_TASKS = TypeAdapter(list[Task])
_PROVIDERS = TypeAdapter(list[Provider])


class Backend(Protocol):
    """What the handlers need from the extension app."""

    @property
    def proxy(self) -> CoordinatorProxy: ...

    def resolve(self, requested: str | None) -> Network: ...


class _Handler(APIHandler):
    """JSON errors as ``{"detail", "field"}``; authorization resource ``gensyn``."""

    auth_resource = "gensyn"

    def initialize(self, backend: Backend) -> None:
        self.backend = backend

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        field: str | None = None
        if isinstance(exc, ApiError):
            detail, field = exc.detail, exc.field
        elif isinstance(exc, web.HTTPError):
            detail = _http_error_detail(exc, status_code)
            if status_code == 403 and "xsrf" in detail.lower():
                detail += "; a browser POST needs the X-XSRFToken header set to the _xsrf cookie"
            elif status_code == 403 and not getattr(self, "_jupyter_current_user", None):
                detail = "not authenticated: log in to the Jupyter server or send its token"
        else:
            name = type(exc).__name__ if exc is not None else "unknown"
            detail = f"unexpected error in the gensyn server extension ({name}); see the server log"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": detail, "field": field}))

    def reply(self, body: Any, status: int = 200) -> None:
        """Finish with ``body`` (already JSON text when a ``str``)."""
        self.set_status(status)
        self.finish(body if isinstance(body, str) else json.dumps(body))

    def network(self, requested: str | None = None) -> Network:
        """The network this request reaches (``network`` query parameter, else default)."""
        if requested is None:
            requested = self.get_query_argument("network", None)
        return self.backend.resolve(requested)

    @property
    def root_dir(self) -> str | None:
        """The Jupyter server's root directory (where the browser's paths start)."""
        root = self.settings.get("server_root_dir")
        return str(root) if root else None

    def task_path(self, task_id: str) -> str:
        if not _TASK_ID.fullmatch(task_id):
            raise ApiError(404, f"no task {task_id!r}: not a task id", "task_id")
        return f"/v1/tasks/{task_id}"

    def json_body(self, allowed: set[str]) -> dict[str, Any]:
        """The request's JSON object (``{}`` when empty), with only ``allowed`` keys."""
        raw = self.request.body
        if not raw or not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"the request body is not JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        for key in body:
            if key not in allowed:
                raise ApiError(422, f"unknown field {key!r}; expected {sorted(allowed)}", key)
        return body


def _http_error_detail(exc: web.HTTPError, status: int) -> str:
    if exc.log_message:
        try:
            return str(exc.log_message % exc.args)
        except (TypeError, ValueError):
            return str(exc.log_message)
    return exc.reason or responses.get(status, "Unknown HTTP Error")


def _validated(adapter: TypeAdapter[Any], body: Any, network: Network, what: str) -> str:
    return adapter.dump_json(_parsed(adapter, body, network, what)).decode()


def _parsed(adapter: TypeAdapter[Any], body: Any, network: Network, what: str) -> Any:
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        raise ApiError(
            502,
            f"the coordinator at {network.url} answered something that is not {what}: "
            f"{exc.errors()[0]['msg']}",
        ) from exc


_TASK = TypeAdapter(Task)


class HealthHandler(_Handler):
    """``GET /gensyn/api/health``: the network, its health report, or why there is none."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            network = self.network()
        except ApiError as exc:
            if exc.status_code != 503:
                raise
            self.reply({"network": None, "source": None, "coordinator": None, "error": exc.detail})
            return
        report: Any = None
        error: str | None = None
        try:
            report = await self.backend.proxy.call(network.url, "GET", "/v1/health")
        except ApiError as exc:
            error = exc.detail
        if report is not None and not isinstance(report, dict):
            report, error = None, f"{network.url} did not answer a health report"
        self.reply(
            {
                "network": network.url,
                "source": network.source,
                "coordinator": report,
                "error": error,
            }
        )


class TasksHandler(_Handler):
    """``GET /gensyn/api/tasks?limit=&state=``: the coordinator's tasks, newest first.

    Each task has ``notebook_path`` too: its notebook below this server's root
    (``null`` when it has none, or one outside the root).
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        params: dict[str, str | int] = {}
        limit = self.get_query_argument("limit", None)
        if limit is not None:
            try:
                params["limit"] = int(limit)
            except ValueError:
                raise ApiError(422, f"limit must be an integer, got {limit!r}", "limit") from None
        state = self.get_query_argument("state", None)
        if state:
            params["state"] = state
        network = self.network()
        headers = session_headers(network.url)  # the coordinator lists the account's own
        body = await self.backend.proxy.call(network.url, "GET", "/v1/tasks", params, headers)
        tasks: list[Task] = _parsed(_TASKS, body, network, "a list of tasks")
        self.reply([task_with_origin(task, self.root_dir) for task in tasks])


class TaskHandler(_Handler):
    """``GET /gensyn/api/tasks/{task_id}``."""

    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        path = self.task_path(task_id)
        network = self.network()
        headers = session_headers(network.url)  # a task with an owner is read by its owner
        body = await self.backend.proxy.call(network.url, "GET", path, None, headers)
        self.reply(task_with_origin(_parsed(_TASK, body, network, "a task"), self.root_dir))


class CancelHandler(_Handler):
    """``POST /gensyn/api/tasks/{task_id}/cancel`` → ``{"task": Task}``.

    Works while the kernel that started the task is busy: the browser calls
    the server, not the kernel.
    """

    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        path = self.task_path(task_id)
        requested = self.json_body({"network"}).get("network")
        query = self.get_query_argument("network", None)
        if requested is not None and not isinstance(requested, str):
            raise ApiError(422, "network must be a URL string", "network")
        if requested is not None and query is not None and requested != query:
            raise ApiError(400, "network given twice, differently (body and query)", "network")
        network = self.network(requested if requested is not None else query)
        # a task with an owner is cancelled by that account only: the session the
        # kernel submitted with (the signer's or the panel's stored token)
        headers = session_headers(network.url)
        body = await self.backend.proxy.call(network.url, "POST", f"{path}/cancel", headers=headers)
        self.reply('{"task":' + _validated(_TASK, body, network, "a task") + "}")


class ProvidersHandler(_Handler):
    """``GET /gensyn/api/providers``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        network = self.network()
        body = await self.backend.proxy.call(network.url, "GET", "/v1/providers")
        self.reply(_validated(_PROVIDERS, body, network, "a list of providers"))


class NotFoundHandler(_Handler):
    """Anything else under ``/gensyn/api``: a JSON 404, not an HTML page."""

    def _missing(self, *args: Any) -> None:
        raise ApiError(404, f"no route {self.request.method} {self.request.path}")

    get = post = put = patch = delete = _missing


def handlers(backend: Backend) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The routes, relative to the server's ``base_url``."""
    kwargs: dict[str, Any] = {"backend": backend}
    routes: list[tuple[str, type[_Handler]]] = [
        ("health", HealthHandler),
        ("tasks", TasksHandler),
        ("tasks/([^/]+)", TaskHandler),
        ("tasks/([^/]+)/cancel", CancelHandler),
        ("providers", ProvidersHandler),
        ("(?:/.*)?", NotFoundHandler),
    ]
    out: list[tuple[str, type[_Handler], dict[str, Any]]] = []
    for pattern, handler in routes:
        sep = "" if pattern.startswith("(?:/") else "/"
        out.append((f"{API_PREFIX}{sep}{pattern}", handler, kwargs))
    return out
