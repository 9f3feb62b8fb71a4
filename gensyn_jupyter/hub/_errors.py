"""Every error the class service answers is JSON ``{"detail", "field"}``, as the coordinator's."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..protocol import ErrorBody

__all__ = ["ServiceError", "error_json", "install_error_handlers"]


class ServiceError(Exception):
    """An answer other than success, with words a student or instructor can act on.

    Parameters
    ----------
    status
        HTTP status code.
    detail
        What is wrong and what to do.
    field
        The field to blame, when one is.
    """

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


def error_json(status: int, detail: str, field: str | None = None) -> JSONResponse:
    """A JSON ``ErrorBody`` response."""
    body = ErrorBody(detail=detail, field=field).model_dump(mode="json")
    return JSONResponse(status_code=status, content=body)


def install_error_handlers(app: FastAPI) -> None:
    """Answer ``ServiceError``, unknown routes and malformed input as ``ErrorBody``."""

    async def _service(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_json(exc.status, exc.detail, exc.field)

    async def _http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "not found"
        if exc.status_code == 404:
            detail = "no such route in the class service"
        return error_json(exc.status_code, detail)

    async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        return error_json(422, str(first.get("msg", "invalid request")), ".".join(loc) or None)

    app.add_exception_handler(ServiceError, _service)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _invalid)
