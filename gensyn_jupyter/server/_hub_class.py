"""``GET /gensyn/api/class``: the panel's Class section, in a lab on JupyterHub.

Under JupyterHub with the gensyn class service (``docs/jupyterhub.md``), it
tells the panel who the user is in the class, their budget, spend and tasks,
and, for an instructor (a Hub admin or ``c.GensynClass.instructors``), the
class view. The user's Hub token goes with every call (``_hub_token``).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ._errors import ApiError
from ._handlers import API_PREFIX, Backend, _Handler
from ._hub_token import class_service

__all__ = ["ClassHandler", "class_handlers"]


class ClassHandler(_Handler):
    """``GET /gensyn/api/class``: the user's place in the class, and the class for instructors.

    ``{"service": null}`` outside a JupyterHub class. Else ``{"service",
    "user", "instructor", "me", "class"}``: ``me`` is the user's own account,
    budget, spend and tasks (``<service>/api/me``); ``class`` is the class
    view (``<service>/api/class``) for an instructor, ``null`` for a student.
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        service = class_service()
        if service is None:
            self.reply({"service": None})
            return
        proxy = self.backend.proxy
        index: Any = await proxy.call(service.url, "GET", "/")
        if not isinstance(index, dict) or "user" not in index:
            raise ApiError(502, f"{service.url} did not answer like the gensyn class service")
        instructor = bool(index.get("instructor"))
        me = await proxy.call(service.url, "GET", "/api/me")
        view = await proxy.call(service.url, "GET", "/api/class") if instructor else None
        self.reply(
            {
                "service": service.url,
                "user": index["user"],
                "instructor": instructor,
                "me": me,
                "class": view,
            }
        )


def class_handlers(backend: Backend) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The route, relative to the server's ``base_url``."""
    return [(f"{API_PREFIX}/class", ClassHandler, {"backend": backend})]
