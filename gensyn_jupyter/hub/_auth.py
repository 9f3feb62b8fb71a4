"""Who is calling: a JupyterHub user, by API token or by the service's OAuth cookie.

A student's kernel sends its server's JupyterHub token (``GENSYN_SESSION``,
set by the spawner) as ``Authorization: Bearer``; a browser gets a cookie
through JupyterHub's OAuth flow (``/oauth_callback``). Both are checked with
the Hub by :class:`jupyterhub.services.auth.HubOAuth`, which also says
whether the token may use this service at all (its access scopes).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from jupyterhub.services.auth import HubOAuth  # type: ignore[import-untyped]

from ._errors import ServiceError

__all__ = ["Caller", "HubIdentity"]

_log = logging.getLogger("gensyn_jupyter.hub")
_HEADER = re.compile(r"^(?:token|bearer)\s+(\S+)$", re.IGNORECASE)
_COOKIE = "gensyn-class-token"
_STATE_COOKIE = "gensyn-class-oauth-state"


@dataclass(frozen=True)
class Caller:
    """A JupyterHub user calling the service."""

    name: str
    admin: bool
    groups: tuple[str, ...] = ()


class HubIdentity:
    """Identifies callers with the Hub; the service's OAuth client for browsers.

    Parameters
    ----------
    prefix
        The service's URL prefix (``/services/gensyn/``), for cookie paths.
    instructors
        Users besides Hub admins who may read the class view.
    """

    def __init__(self, *, prefix: str, instructors: frozenset[str] = frozenset()) -> None:
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.instructors = instructors
        self.auth: Any = HubOAuth(cache_max_age=60)

    def is_instructor(self, caller: Caller) -> bool:
        """Hub admins and the configured instructors."""
        return caller.admin or caller.name in self.instructors

    async def caller(self, request: Request, *, cookie: bool = True) -> Caller | None:
        """The user of the request's token (or OAuth cookie); None when it carries neither.

        ``cookie=False`` accepts only a token in the ``Authorization`` header:
        the routes that act (submit, cancel) are not for pages of the same
        origin, which a browser would send the cookie from.

        Raises
        ------
        ServiceError
            401 for a token the Hub does not know, 403 for one without access
            to this service, 503 when the Hub cannot be asked.
        """
        token = _bearer(request) or (request.cookies.get(_COOKIE, "") if cookie else "")
        if not token:
            return None
        try:
            model = await self.auth.user_for_token(token, sync=False)
        except Exception as exc:  # tornado's HTTPError, aiohttp's errors: the Hub is away
            _log.warning("cannot ask JupyterHub who this is: %s", exc)
            raise ServiceError(503, "cannot reach JupyterHub to check the token; retry") from None
        if not model:
            raise ServiceError(
                401, "JupyterHub does not know this token (expired, or revoked): log in again"
            )
        if model.get("kind", "user") != "user":
            raise ServiceError(403, "only JupyterHub users have a class account, not services")
        if not self.auth.check_scopes(self.auth.access_scopes, model):
            scopes = ", ".join(sorted(self.auth.access_scopes))
            raise ServiceError(
                403,
                f"this token may not use the class service: it needs {scopes} "
                "(see docs/jupyterhub.md: the 'user' role and Spawner.server_token_scopes)",
            )
        groups = tuple(str(g) for g in model.get("groups") or ())
        return Caller(name=str(model["name"]), admin=bool(model.get("admin")), groups=groups)

    def login_redirect(self, request: Request) -> Response:
        """Send a browser to the Hub to log in, coming back to this page."""
        verifier, challenge, method = self.auth.generate_pkce_code_challenge()
        state = secrets.token_urlsafe(16)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        url = (
            self.auth.login_url
            + "&"
            + urlencode(
                {"state": state, "code_challenge": challenge, "code_challenge_method": method}
            )
        )
        response = RedirectResponse(url, status_code=302)
        response.set_cookie(
            _STATE_COOKIE,
            json.dumps({"state": state, "next": target, "verifier": verifier}),
            max_age=600,
            path=self.prefix,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    async def oauth_callback(self, request: Request) -> Response:
        """Finish the Hub's OAuth flow: trade the code for a token, keep it in a cookie."""
        code = request.query_params.get("code", "")
        state = request.query_params.get("state", "")
        try:
            saved = json.loads(request.cookies.get(_STATE_COOKIE, ""))
            expected, target, verifier = str(saved["state"]), str(saved["next"]), saved["verifier"]
        except (ValueError, KeyError, TypeError):
            raise ServiceError(400, "no login in progress: open the page again") from None
        if not code or not secrets.compare_digest(state, expected):
            raise ServiceError(400, "the login's state does not match: open the page again")
        try:
            token = await self.auth.token_for_code(code, code_verifier=verifier, sync=False)
        except Exception as exc:  # the Hub refused the code or is away
            _log.warning("JupyterHub refused the OAuth code: %s", exc)
            raise ServiceError(403, "JupyterHub refused the login: open the page again") from None
        if not target.startswith(self.prefix):
            target = self.prefix
        response = RedirectResponse(target, status_code=302)
        response.delete_cookie(_STATE_COOKIE, path=self.prefix)
        response.set_cookie(
            _COOKIE,
            token,
            path=self.prefix,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response


def _bearer(request: Request) -> str:
    match = _HEADER.match(request.headers.get("authorization", "").strip())
    return match.group(1) if match else ""
