"""A cap on JSON request bodies: checked on ``Content-Length`` and counted while reading.

``document_limits`` adds the answers every route may give because of the
limits and checks in front of it (malformed or oversized bodies, a bad
session token, too many requests) to the app's OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import error_response

__all__ = ["JsonBodyLimit", "document_limits"]

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_COMMON = {
    400: "Bad request: the body is not valid JSON, or the detail says what else is wrong",
    401: "The bearer token is unknown or expired: sign in again",
    413: "Body over the size limit",
    429: "Too many requests from this caller: wait for Retry-After seconds",
}

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class JsonBodyLimit:
    """ASGI middleware answering 413 ``ErrorBody`` for bodies over ``max_bytes``.

    The body is read (at most ``max_bytes``) before the app runs and replayed to
    it; later ``receive`` calls (disconnect detection) reach the server.  Paths
    under ``exempt_prefixes`` (blob uploads, which stream) pass untouched.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    max_bytes
        Largest body accepted.
    exempt_prefixes
        Path prefixes whose bodies are not buffered nor capped here.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in _NO_BODY
            or str(scope["path"]).startswith(self.exempt_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        too_big = error_response(
            413, f"request body is over the limit of {self.max_bytes} bytes", None
        )
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "Content-Length is not a number")(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = bytes(message.get("body", b""))
            total += len(chunk)
            if total > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _content_length(scope: Scope) -> int | None:
    """The declared length, ``None`` when absent, ``-1`` when not a number."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _COMMON[status],
        "content": {"application/json": {"schema": _ERROR_REF}},
    }


def document_limits(app: FastAPI, *, rate_limited: bool) -> None:
    """Document, on every operation of ``app``'s OpenAPI schema, the errors of its limits.

    400 and 413 where an operation takes a body, 401 where it reads a bearer
    token, 429 everywhere when ``rate_limited``.
    """
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                statuses = [429] if rate_limited else []
                if "requestBody" in operation:
                    statuses += [400, 413]
                if operation.get("security"):
                    statuses.append(401)
                for status in statuses:
                    operation["responses"].setdefault(str(status), _error(status))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
