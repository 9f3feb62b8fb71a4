"""``/v1/providers`` and ``/v1/leases``: register, heartbeat, long-poll, events, result."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ..protocol import (
    CheckpointPost,
    EventsPost,
    EventsPostReply,
    Heartbeat,
    Lease,
    Provider,
    ProviderInfo,
    ProviderRegistration,
    ResultManifest,
    Task,
    Verdict,
)
from ._auth import OptionalAccount
from ._context import Ctx, Token, in_thread
from ._errors import error_responses
from ._lease_posts import post_events, post_result
from ._leases import claim, start_polling
from ._providers import heartbeat, list_providers, register_provider
from ._replication import post_replica
from ._resume import post_checkpoint
from ._verification import post_verdict

__all__ = ["leases", "providers"]

providers = APIRouter(prefix="/v1/providers", tags=["providers"])
leases = APIRouter(prefix="/v1/leases", tags=["leases"])

_AUTH = (401, 403, 404)


@providers.post(
    "",
    status_code=201,
    response_model=ProviderRegistration,
    summary="Register a provider",
    responses=error_responses(400, 413, 422),
)
async def register(info: ProviderInfo, ctx: Ctx, account: OptionalAccount) -> ProviderRegistration:
    """Record the provider's hardware; the answer holds its bearer token.

    A provider signed in with its own key (``Authorization: Bearer <session>``)
    is paid to that address and can take paid tasks once staked.
    """
    registration = await in_thread(register_provider, ctx, info, account)
    ctx.events.notify()  # GET /v1/events streams provider changes
    return registration


@providers.get("", response_model=list[Provider], summary="List providers")
async def get_providers(ctx: Ctx) -> list[Provider]:
    """Every provider, with ``idle``/``busy``/``offline`` as of now."""
    return await in_thread(list_providers, ctx)


@providers.post(
    "/{provider_id}/heartbeat",
    response_model=Heartbeat,
    summary="Stay alive; learn which tasks to stop",
    responses=error_responses(*_AUTH),
)
async def beat(provider_id: str, ctx: Ctx, token: Token) -> Heartbeat:
    """Renew the provider and its leases; ``cancel`` names tasks to stop now."""
    return await in_thread(heartbeat, ctx, provider_id, token)


@providers.post(
    "/{provider_id}/lease",
    response_model=Lease,
    summary="Long-poll for a task",
    responses={
        204: {"description": "no task came within `wait` seconds"},
        **error_responses(*_AUTH, 422),
    },
)
async def lease(
    provider_id: str,
    request: Request,
    ctx: Ctx,
    token: Token,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for a task")] = 30.0,
) -> Lease | Response:
    """The oldest queued task this provider can run, or 204 after ``wait`` seconds.

    Asking for a lease releases the provider's previous one.
    """
    poller = await in_thread(start_polling, ctx, provider_id, token)
    ctx.events.notify()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await request.is_disconnected():
        queued = ctx.queue.token()
        granted = await in_thread(claim, ctx, poller)
        if granted is not None:
            ctx.events.notify()
            return granted
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await ctx.queue.wait(queued, min(remaining, ctx.settings.fallback_poll_seconds))
    return Response(status_code=204)


@leases.post(
    "/{lease_id}/events",
    response_model=EventsPostReply,
    summary="Post stdout, stderr, metrics and log events",
    responses=error_responses(*_AUTH, 409, 413, 422),
)
async def lease_events(lease_id: str, body: EventsPost, ctx: Ctx, token: Token) -> EventsPostReply:
    """Record events for the lease's task; ``cancelled`` says to stop the worker."""
    reply = await in_thread(post_events, ctx, lease_id, token, body)
    if reply.accepted:
        ctx.events.notify()
    return reply


@leases.post(
    "/{lease_id}/result",
    response_model=Task,
    summary="Post the run's result",
    responses=error_responses(400, *_AUTH, 409, 413, 422),
)
async def lease_result(lease_id: str, manifest: ResultManifest, ctx: Ctx, token: Token) -> Task:
    """Finish the task: ``failed`` when the cell raised, else committed, verified, settled."""
    task = await in_thread(post_result, ctx, lease_id, token, manifest)
    ctx.events.notify()
    ctx.queue.notify()  # a spot check opened verification jobs
    return task


@leases.post(
    "/{lease_id}/checkpoint",
    status_code=204,
    summary="Post a checkpoint the run just took (where it resumes if this provider is lost)",
    responses=error_responses(400, *_AUTH, 409, 413, 422),
)
async def lease_checkpoint(lease_id: str, post: CheckpointPost, ctx: Ctx, token: Token) -> Response:
    """Keep the run's latest resumable checkpoint (its blobs uploaded first); renews the lease.

    If this provider then goes silent past the lease ttl, the task is queued
    again and the next provider resumes from this checkpoint instead of the
    task failing (free tasks only: a paid task's escrow is assigned to this provider).
    """
    await in_thread(post_checkpoint, ctx, lease_id, token, post)
    return Response(status_code=204)


@leases.post(
    "/{lease_id}/verdict",
    status_code=204,
    summary="Post a verification job's verdict",
    responses=error_responses(400, *_AUTH, 409, 422),
)
async def lease_verdict(lease_id: str, verdict: Verdict, ctx: Ctx, token: Token) -> Response:
    """A verifier's (or the referee's) answer to a job lease; signed on a paid network."""
    await in_thread(post_verdict, ctx, lease_id, token, verdict)
    ctx.events.notify()
    ctx.queue.notify()  # a mismatch opened a referee job
    return Response(status_code=204)


@leases.post(
    "/{lease_id}/replica",
    status_code=204,
    summary="Post the second run of a replicated task",
    responses=error_responses(400, *_AUTH, 409, 422),
)
async def lease_replica(
    lease_id: str, manifest: ResultManifest, ctx: Ctx, token: Token
) -> Response:
    """A replica job's result (its root is committed on chain); compared with the first run."""
    await in_thread(post_replica, ctx, lease_id, token, manifest)
    ctx.events.notify()
    ctx.queue.notify()  # different roots opened a referee job
    return Response(status_code=204)
