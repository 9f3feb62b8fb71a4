"""A cap on JSON request bodies: checked on ``Content-Length`` and counted while reading."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import error_response

__all__ = ["JsonBodyLimit"]

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
