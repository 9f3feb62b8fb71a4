"""Provider transactions: register, authenticate, list, heartbeat."""

from __future__ import annotations

import time
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..protocol import Heartbeat, Provider, ProviderInfo, ProviderRegistration, TaskState
from ._context import Context
from ._db import LeaseRow, ProviderRow, TaskRow
from ._errors import ApiError
from ._ids import hash_token, new_id, new_token, token_matches

__all__ = [
    "authenticate",
    "count_online",
    "describe_device",
    "heartbeat",
    "list_providers",
    "provider_from_row",
    "register_provider",
    "touch",
]

_TERMINAL = [s.value for s in TaskState if s.terminal]


def describe_device(info: ProviderInfo) -> str:
    """Words for a provider's hardware: ``'cpu, 2 cores'`` or ``'cuda: NVIDIA H200'``."""
    if info.device_type == "cpu":
        return f"cpu, {info.cpu_count} core{'s' if info.cpu_count != 1 else ''}"
    names = [g.name for g in info.gpus]
    if not names:
        return "cuda"
    if len(set(names)) == 1 and len(names) > 1:
        return f"cuda: {len(names)} x {names[0]}"
    return "cuda: " + ", ".join(names)


def _held_provider_ids(session: Session) -> set[str]:
    return set(session.scalars(select(LeaseRow.provider_id).where(LeaseRow.released_at.is_(None))))


def provider_from_row(row: ProviderRow, ctx: Context, busy: bool, now: float) -> Provider:
    """The protocol ``Provider``; ``offline`` when marked so or silent for 3 heartbeats."""
    silent = now - row.last_seen > ctx.settings.offline_after_seconds
    state: Literal["idle", "busy", "offline"] = (
        "offline" if row.offline or silent else "busy" if busy else "idle"
    )
    return Provider(
        id=row.id,
        info=ProviderInfo.model_validate_json(row.info),
        state=state,
        last_seen=row.last_seen,
        tasks_done=row.tasks_done,
        address=row.address,
    )


def register_provider(
    ctx: Context, info: ProviderInfo, address: str | None = None
) -> ProviderRegistration:
    """Record a provider and give it a bearer token (kept only hashed)."""
    now = time.time()
    token = new_token()
    with ctx.db.write() as session:
        row = ProviderRow(
            id=new_id("p"),
            name=info.name,
            info=info.model_dump_json(),
            token_hash=hash_token(token),
            registered_at=now,
            last_seen=now,
            offline=False,
            tasks_done=0,
            address=address,
        )
        session.add(row)
        session.flush()
        provider = provider_from_row(row, ctx, busy=False, now=now)
    return ProviderRegistration(
        provider=provider,
        token=token,
        heartbeat_seconds=ctx.settings.heartbeat_seconds,
        lease_ttl_seconds=ctx.settings.lease_ttl_seconds,
    )


def authenticate(session: Session, token: str, provider_id: str | None = None) -> ProviderRow:
    """The provider ``token`` belongs to.

    Raises
    ------
    ApiError
        401 when the token is unknown; 404 when ``provider_id`` is unknown;
        403 when the token is another provider's.
    """
    row = session.scalar(select(ProviderRow).where(ProviderRow.token_hash == hash_token(token)))
    if row is None or not token_matches(token, row.token_hash):
        raise ApiError(
            401,
            "bearer token not recognised: use the token from this provider's registration",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if provider_id is not None and row.id != provider_id:
        if session.get(ProviderRow, provider_id) is None:
            raise ApiError(404, f"provider {provider_id} not found", "provider_id")
        raise ApiError(403, f"this token belongs to provider {row.id}, not {provider_id}")
    return row


def touch(row: ProviderRow, now: float) -> None:
    """Note that the provider is alive."""
    row.last_seen = now
    row.offline = False


def list_providers(ctx: Context) -> list[Provider]:
    """Every registered provider, newest first, with its current state."""
    now = time.time()
    with ctx.db.read() as session:
        busy = _held_provider_ids(session)
        rows = session.scalars(select(ProviderRow).order_by(ProviderRow.registered_at.desc()))
        return [provider_from_row(r, ctx, r.id in busy, now) for r in rows]


def count_online(ctx: Context) -> int:
    """How many providers are not offline."""
    return sum(p.state != "offline" for p in list_providers(ctx))


def heartbeat(ctx: Context, provider_id: str, token: str) -> Heartbeat:
    """Renew the provider and its leases; name the tasks it must stop."""
    now = time.time()
    with ctx.db.write() as session:
        provider = authenticate(session, token, provider_id)
        touch(provider, now)
        held = session.execute(
            select(LeaseRow, TaskRow.state)
            .join(TaskRow, TaskRow.id == LeaseRow.task_id)
            .where(LeaseRow.provider_id == provider.id, LeaseRow.released_at.is_(None))
        ).all()
        cancel: list[str] = []
        for lease, state in held:
            lease.expires_at = now + ctx.settings.lease_ttl_seconds
            if state in _TERMINAL:
                cancel.append(lease.task_id)
        return Heartbeat(cancel=cancel)
