"""The one error every route raises: a status, a message and the culprit field."""

from __future__ import annotations

from tornado import web

__all__ = ["ApiError"]


class ApiError(web.HTTPError):
    """An answer of ``status`` with the body ``{"detail": detail, "field": field}``.

    Parameters
    ----------
    status
        HTTP status code of the answer.
    detail
        What went wrong, in words a notebook user can act on.
    field
        The request field at fault (``network``, ``limit``), or ``None``.
    """

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        # Passed as an argument, so a "%" in the detail is never taken for a format.
        super().__init__(status, "%s", detail)
        self.detail = detail
        self.field = field
