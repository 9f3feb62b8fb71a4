"""Calls to the coordinator over one ``httpx.AsyncClient``, errors turned into ``ApiError``."""

from __future__ import annotations

from typing import Any

import httpx

from ..protocol import CoordinatorError, raise_for_error
from ._errors import ApiError
from ._hub_token import class_service_headers

__all__ = ["CoordinatorProxy"]


class CoordinatorProxy:
    """The server's client of coordinators: async, so the server's event loop never waits.

    Parameters
    ----------
    timeout
        Seconds to wait for a coordinator (connect, and each read) before 504.
    """

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._client = httpx.AsyncClient(follow_redirects=False)

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    async def aclose(self) -> None:
        """Close the connections (the server is shutting down)."""
        await self._client.aclose()

    async def call(
        self,
        network: str,
        method: str,
        path: str,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """``method`` ``network + path`` and return the JSON answer.

        ``headers`` (a session's ``Authorization``) give way to the class
        service's under JupyterHub.

        Raises
        ------
        ApiError
            The coordinator's own status, detail and field for a 4xx it
            explains; 502 when it cannot be reached, answers 5xx or does not
            answer like a coordinator; 504 when it does not answer in time.
        """
        try:
            response = await self._client.request(
                method,
                f"{network}{path}",
                params=params,
                headers={**(headers or {}), **class_service_headers(network)},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(network, exc) from exc
        return _json_of(network, response)

    async def open_stream(
        self,
        network: str,
        path: str,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        *,
        read_timeout: float = 60.0,
    ) -> httpx.Response:
        """``GET`` ``network + path`` as a stream: the response, open, whatever its status.

        The caller reads it and must ``aclose()`` it. ``read_timeout`` bounds
        the silence between two chunks (a live stream sends keep-alives).

        Raises
        ------
        ApiError
            502 when the coordinator cannot be reached; 504 when it does not
            answer in time.
        """
        request = self._client.build_request(
            "GET",
            f"{network}{path}",
            params=params,
            headers={
                "Accept": "text/event-stream",
                **class_service_headers(network),
                **(headers or {}),
            },
            timeout=httpx.Timeout(self.timeout, read=read_timeout),
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(network, exc) from exc

    def _unreachable(self, network: str, exc: httpx.HTTPError) -> ApiError:
        """504 for a coordinator that did not answer in time, 502 for one not reached."""
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(
                504,
                f"the coordinator at {network} did not answer within {self.timeout:g} s "
                f"({type(exc).__name__})",
            )
        reason = str(exc) or type(exc).__name__
        return ApiError(502, f"cannot reach the coordinator at {network}: {reason}")


def _json_of(network: str, response: httpx.Response) -> Any:
    status = response.status_code
    if 400 <= status < 500 and _is_error_body(response):
        try:
            raise_for_error(response)
        except CoordinatorError as exc:
            raise ApiError(status, exc.detail, exc.field) from exc
    if status >= 300:
        snippet = response.text[:200].strip()
        raise ApiError(
            502,
            f"the coordinator at {network} answered {status} {response.reason_phrase}"
            + (f": {snippet}" if snippet else ""),
        )
    try:
        return response.json()
    except ValueError as exc:
        raise ApiError(502, f"{network} did not answer JSON; is it a gensyn coordinator?") from exc


def _is_error_body(response: httpx.Response) -> bool:
    """Whether a 4xx carries the coordinator's ``ErrorBody`` (else it is not a coordinator)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("detail"), str)
