"""Every error the coordinator answers is an ``ErrorBody`` that names what is wrong."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..protocol import ErrorBody

__all__ = [
    "ApiError",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "validation_problem",
]

_log = logging.getLogger("gensyn_jupyter.coordinator")

_DESCRIPTIONS = {
    400: "Bad request: the detail says what is wrong",
    401: "Missing or wrong bearer token, or not signed in",
    402: "The escrow on chain is missing or short",
    403: "The token belongs to another provider",
    404: "Unknown id or route",
    409: "Conflict with the current state of the task or lease",
    413: "Body over the size limit",
    422: "A field is malformed: the detail and field name it",
}


class ApiError(Exception):
    """An answer other than success, raised anywhere in the coordinator.

    Parameters
    ----------
    status
        HTTP status code (4xx).
    detail
        What is wrong, in words a user can act on.
    field
        The field to blame, when one is.
    headers
        Extra response headers (e.g. ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


def error_response(
    status: int, detail: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A JSON ``ErrorBody`` response."""
    body = ErrorBody(detail=detail, field=field).model_dump(mode="json")
    return JSONResponse(status_code=status, content=body, headers=dict(headers or {}))


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting ``ErrorBody`` for ``codes``."""
    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS.get(c, "Error")} for c in codes}


def _field_name(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or None


def _describe(error: Mapping[str, Any]) -> tuple[int, str, str | None]:
    """Status, detail and field for one pydantic/FastAPI validation error."""
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "JSON decode error")
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return 400, f"request body is not valid JSON: {reason}{where}", None
    field = _field_name(loc)
    if field is None:
        if kind == "missing":
            return 422, "request body is missing: send a JSON object", None
        if isinstance(error.get("input"), bytes | bytearray):
            return 422, "request body must be JSON (Content-Type: application/json)", None
        return 422, f"request body: {msg}", None
    return 422, f"field '{field}': {msg}", field


def validation_problem(exc: ValidationError, prefix: str = "") -> tuple[str, str | None]:
    """Describe the first error of ``exc``: ``("field 'a.b': msg", "a.b")``.

    ``prefix`` is prepended to the field path (e.g. ``"events.3.data.points"``).
    """
    errors = exc.errors()
    if not errors:
        return "not valid", prefix or None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"not valid JSON ({first.get('msg', '')})", prefix or None
    parts = [prefix] if prefix else []
    parts += [str(p) for p in first.get("loc", ())]
    field = ".".join(parts) or None
    msg = str(first.get("msg", "invalid"))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if field is None:
        return f"{msg}{more}", None
    return f"field '{field}': {msg}{more}", field


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.field, exc.headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    described = [_describe(e) for e in exc.errors()] or [(422, "request is not valid", None)]
    status, _, field = described[0]
    detail = "; ".join(d for _, d, _ in described[:5])
    if len(described) > 5:
        detail += f"; and {len(described) - 5} more"
    return error_response(status, detail, field)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"not found: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "request body could not be read as JSON: send a UTF-8 JSON object"
    return error_response(exc.status_code, detail, None, exc.headers)


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error in the coordinator; its log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with an ``ErrorBody`` and never a traceback."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)
