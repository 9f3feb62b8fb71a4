"""The coordinator app: wiring, the lease-expiry task, health, and ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator
from importlib import metadata

import fastapi
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from .. import __version__
from ._blobs import BlobStore
from ._chain import ChainConfig, ChainLink
from ._context import Context, Ctx, Settings, in_thread
from ._db import Database
from ._drain import Drain, DrainMiddleware, draining_server
from ._errors import install_error_handlers
from ._leases import expire_leases, grant_grace
from ._limits import JsonBodyLimit, document_limits
from ._logs import RequestLog, configure_logging
from ._metrics import CONTENT_TYPE, LeaseLatency, render_metrics
from ._providers import count_online
from ._ratelimit import RateLimit, RateLimitMiddleware
from ._routes_blobs import router as blobs_router
from ._routes_chain import router as chain_router
from ._routes_events import router as events_router
from ._routes_providers import leases as leases_router
from ._routes_providers import providers as providers_router
from ._routes_tasks import router as tasks_router
from ._tasks import count_tasks
from ._watcher import Keeper, apply_new_events

__all__ = ["Health", "create_app", "serve"]

_log = logging.getLogger("gensyn_jupyter.coordinator")


def _version() -> str:
    try:
        return metadata.version("gensyn-jupyter")
    except metadata.PackageNotFoundError:
        return __version__


class Health(BaseModel):
    """The answer of ``GET /v1/health``."""

    status: str
    version: str
    providers_online: int
    tasks: int


async def _watch_chain_forever(ctx: Context) -> None:
    """Apply contract events and call finalize/expire when due, for as long as the app runs."""
    assert ctx.chain is not None
    keeper = Keeper()
    interval = ctx.chain.config.poll_seconds
    while True:
        try:
            if await in_thread(apply_new_events, ctx):
                ctx.events.notify()
            sent = await in_thread(keeper.run_once, ctx)
            if sent and await in_thread(apply_new_events, ctx):
                ctx.events.notify()
        except Exception:  # keep serving whatever went wrong (a node restart, say)
            _log.exception("chain watcher failed; retrying")
        await asyncio.sleep(interval)


async def _expire_forever(ctx: Context) -> None:
    """Fail tasks whose provider went silent, for as long as the app runs."""
    interval = min(1.0, max(0.05, ctx.settings.lease_ttl_seconds / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            if await in_thread(expire_leases, ctx):
                ctx.events.notify()
                ctx.queue.notify()  # a lost run may be queued again to resume
        except Exception:  # keep serving whatever went wrong
            _log.exception("lease expiry failed; retrying")


def create_app(
    *,
    database_url: str,
    blob_dir: pathlib.Path,
    lease_ttl_seconds: float = 15.0,
    heartbeat_seconds: float = 2.0,
    max_blob_bytes: int = 8 * 2**30,
    max_json_bytes: int = 16 * 2**20,
    chain: ChainConfig | None = None,
    max_metric_points: int = 200_000,
    rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 - frozen, shared safely
) -> fastapi.FastAPI:
    """Build the coordinator's FastAPI app.

    Parameters
    ----------
    database_url
        SQLAlchemy URL; ``sqlite:///path/coordinator.sqlite`` by default in ``serve``.
    blob_dir
        Directory of the content-addressed blob store (created when missing).
    lease_ttl_seconds
        A lease whose provider is silent this long expires and its task fails.
    heartbeat_seconds
        How often providers should heartbeat; three missed make one ``offline``.
    max_blob_bytes
        Largest blob accepted (413 beyond).
    max_json_bytes
        Largest JSON request body accepted (413 beyond); also the largest bundle.
    chain
        The escrow contract and the operator key; None runs a free network.
    max_metric_points
        Most metric points one events post may carry (413 beyond).
    rate_limit
        Requests per second (and burst) per caller, a bearer token or an IP
        (429 beyond); None turns the limit off.

    Returns
    -------
    fastapi.FastAPI
        The app; its lifespan runs the lease-expiry task.
    """
    if lease_ttl_seconds <= 0 or heartbeat_seconds <= 0:
        raise ValueError("lease_ttl_seconds and heartbeat_seconds must be positive")
    if max_blob_bytes <= 0 or max_json_bytes <= 0 or max_metric_points <= 0:
        raise ValueError("max_blob_bytes, max_json_bytes and max_metric_points must be positive")
    settings = Settings(
        lease_ttl_seconds=lease_ttl_seconds,
        heartbeat_seconds=heartbeat_seconds,
        max_blob_bytes=max_blob_bytes,
        max_json_bytes=max_json_bytes,
        max_metric_points=max_metric_points,
    )
    ctx = Context(
        db=Database(database_url),
        blobs=BlobStore(pathlib.Path(blob_dir), max_bytes=max_blob_bytes),
        settings=settings,
        chain=ChainLink(chain) if chain is not None else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: fastapi.FastAPI) -> AsyncIterator[None]:
        ctx.events.notify()  # fresh asyncio.Events for this loop
        ctx.queue.notify()
        await in_thread(grant_grace, ctx)
        background = [asyncio.create_task(_expire_forever(ctx), name="gensyn-lease-expiry")]
        if ctx.chain is not None:
            background.append(
                asyncio.create_task(_watch_chain_forever(ctx), name="gensyn-chain-watcher")
            )
        try:
            yield
        finally:
            for job in background:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            ctx.db.close()

    app = fastapi.FastAPI(
        title="gensyn-jupyter coordinator",
        version=_version(),
        description="Tasks, providers, leases, blobs and event streams (see docs/protocol.md).",
        lifespan=lifespan,
    )
    app.state.coordinator = ctx
    drain = Drain()
    app.state.drain = drain
    install_error_handlers(app)
    app.add_middleware(JsonBodyLimit, max_bytes=max_json_bytes, exempt_prefixes=("/v1/blobs/",))
    app.add_middleware(DrainMiddleware, drain=drain)
    app.add_middleware(RequestLog)
    if rate_limit is not None:  # outermost: a caller over its rate costs no body read
        app.add_middleware(RateLimitMiddleware, limit=rate_limit)
    document_limits(app, rate_limited=rate_limit is not None)
    app.include_router(blobs_router)
    app.include_router(tasks_router)
    app.include_router(providers_router)
    app.include_router(leases_router)
    app.include_router(chain_router)
    app.include_router(events_router)

    @app.get("/v1/health", response_model=Health, tags=["health"], summary="Is it up?")
    async def health(ctx: Ctx) -> Health:
        """Status, version, providers online, tasks known."""
        online = await in_thread(count_online, ctx)
        tasks = await in_thread(count_tasks, ctx)
        return Health(status="ok", version=_version(), providers_online=online, tasks=tasks)

    latency = LeaseLatency()

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["health"],
        summary="Prometheus metrics",
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    async def metrics(ctx: Ctx) -> PlainTextResponse:
        """Tasks by state, queue depth, providers, lease latency, bytes moved (text 0.0.4)."""
        text = await in_thread(render_metrics, ctx, latency, draining=drain.active)
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    return app


def serve(
    *,
    host: str,
    port: int,
    data_dir: pathlib.Path,
    database_url: str | None = None,
    lease_ttl_seconds: float = 15.0,
    heartbeat_seconds: float = 2.0,
    max_blob_bytes: int = 8 * 2**30,
    max_json_bytes: int = 16 * 2**20,
    chain: ChainConfig | None = None,
    rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 - frozen, shared safely
    log_json: bool = False,
    drain_seconds: float = 5.0,
) -> None:
    """Run the coordinator with uvicorn until SIGINT or SIGTERM.

    On SIGTERM it drains: no new lease is handed out, requests in flight run
    to their end (for at most ``drain_seconds``), then it stops.

    Parameters
    ----------
    host, port
        Where to listen.
    data_dir
        Holds ``coordinator.sqlite`` and ``blobs/`` (created when missing).
    database_url
        Another database instead of the SQLite file (e.g. PostgreSQL).
    lease_ttl_seconds, heartbeat_seconds, max_blob_bytes, max_json_bytes
        As for :func:`create_app`.
    chain, rate_limit
        As for :func:`create_app`.
    log_json
        Log one JSON object per line (with task, lease and provider ids) on stderr.
    drain_seconds
        How long a SIGTERM waits for requests in flight before it closes them.
    """
    import uvicorn

    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        database_url=database_url or f"sqlite:///{data_dir / 'coordinator.sqlite'}",
        blob_dir=data_dir / "blobs",
        lease_ttl_seconds=lease_ttl_seconds,
        heartbeat_seconds=heartbeat_seconds,
        max_blob_bytes=max_blob_bytes,
        max_json_bytes=max_json_bytes,
        chain=chain,
        rate_limit=rate_limit,
    )
    configure_logging(json_logs=log_json)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=max(1, round(drain_seconds)),
    )
    draining_server(config, app.state.drain).run()
