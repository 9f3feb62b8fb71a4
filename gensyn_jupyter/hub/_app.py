"""The class service's FastAPI app: the routes, and the sweep that settles budgets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
import httpx
from fastapi import FastAPI

from ..chain import MarketError
from ..protocol import CoordinatorError
from ._approval import settle_student
from ._auth import HubIdentity
from ._config import GensynClass
from ._errors import install_error_handlers
from ._gateway import gateway_router
from ._keys import StudentKeys
from ._ledger import ClassLedger
from ._routes import class_router
from ._state import ServiceState
from ._students import Roster

__all__ = ["create_app"]

_log = logging.getLogger("gensyn_jupyter.hub")


def _sweep_once(state: ServiceState) -> None:
    """Settle every student with tasks still held against their budget."""
    for user in state.ledger.users():
        entries = state.ledger.entries(user)
        if all(e.paid_wei is not None for e in entries.values()):
            continue
        try:
            student = state.roster.get(user)
            settle_student(student, ledger=state.ledger, http=state.sync_http)
        except (httpx.HTTPError, CoordinatorError, MarketError, ValueError, OSError) as exc:
            _log.warning("settling %s: %s; retrying", user, exc)
            if isinstance(exc, CoordinatorError) and exc.status == 401:
                with contextlib.suppress(Exception):  # the next sweep says why, if it fails
                    state.roster.get(user, renew=True)


async def _sweeper(state: ServiceState) -> None:
    while True:
        await anyio.to_thread.run_sync(_sweep_once, state)
        await asyncio.sleep(state.settings.sweep_seconds)


def create_app(settings: GensynClass, *, data_dir: Path, prefix: str) -> FastAPI:
    """The class service for ``settings``, keeping keys and ledger under ``data_dir``.

    Parameters
    ----------
    settings
        The instructor's ``c.GensynClass`` configuration.
    data_dir
        Folder for ``keys/`` (0700, one 0600 file per student) and ``ledger.json``.
    prefix
        The URL prefix JupyterHub routes to the service (``/services/gensyn/``).

    Raises
    ------
    ValueError
        When no coordinator is configured.
    """
    if not settings.coordinator_url:
        raise ValueError("set c.GensynClass.coordinator_url to the class's coordinator")
    prefix = "/" + prefix.strip("/") + "/"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = StudentKeys(data_dir / "keys")
    timeout = settings.timeout_seconds
    coordinator = settings.coordinator_url.rstrip("/")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(
            settings=settings,
            identity=HubIdentity(prefix=prefix, instructors=frozenset(settings.instructors)),
            keys=keys,
            ledger=ClassLedger(data_dir / "ledger.json"),
            roster=Roster(
                coordinator_url=coordinator,
                keys=keys,
                budget_for=settings.budget_for,
                fund_from_faucet=settings.fund_from_faucet,
                timeout=timeout,
            ),
            http=httpx.AsyncClient(base_url=coordinator, timeout=timeout),
            sync_http=httpx.Client(base_url=coordinator, timeout=timeout),
            prefix=prefix,
        )
        app.state.gensyn = state
        sweeper = asyncio.create_task(_sweeper(state))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await state.http.aclose()
            state.sync_http.close()
            state.roster.close()

    app = FastAPI(
        title="gensyn class service",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    app.include_router(gateway_router(prefix))
    app.include_router(class_router(prefix))
    return app
