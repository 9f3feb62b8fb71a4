"""What every route of the class service shares: settings, the Hub, the students, the ledger."""

from __future__ import annotations

from dataclasses import dataclass

import anyio.to_thread
import httpx
from fastapi import Request

from ._auth import Caller, HubIdentity
from ._config import GensynClass
from ._errors import ServiceError
from ._keys import StudentKeys
from ._ledger import ClassLedger
from ._students import Roster, Student

__all__ = ["ServiceState", "require_caller", "service_state", "signed_in_student"]


@dataclass
class ServiceState:
    """The class service's parts (one per process)."""

    settings: GensynClass
    identity: HubIdentity
    keys: StudentKeys
    ledger: ClassLedger
    roster: Roster
    http: httpx.AsyncClient
    sync_http: httpx.Client
    prefix: str


def service_state(request: Request) -> ServiceState:
    """The state of the app serving ``request``."""
    state = request.app.state.gensyn
    assert isinstance(state, ServiceState)
    return state


async def require_caller(request: Request) -> Caller:
    """The calling Hub user, by token only; 401 when the request carries none."""
    caller = await service_state(request).identity.caller(request, cookie=False)
    if caller is None:
        raise ServiceError(
            401,
            "send your JupyterHub token (Authorization: Bearer ...): a student's kernel gets it "
            "as GENSYN_SESSION from the spawner, a browser logs in through the Hub",
        )
    return caller


async def signed_in_student(state: ServiceState, caller: Caller, *, renew: bool = False) -> Student:
    """The caller's account, made, funded and signed in to the coordinator if need be."""
    try:
        return await anyio.to_thread.run_sync(lambda: state.roster.get(caller.name, renew=renew))
    except httpx.TimeoutException:
        raise ServiceError(504, "the class's coordinator did not answer in time") from None
    except (httpx.HTTPError, ValueError, RuntimeError, OSError) as exc:
        raise ServiceError(502, f"cannot sign you in to the class's coordinator: {exc}") from None
