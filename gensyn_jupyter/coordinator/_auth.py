"""Accounts sign in with Ethereum (EIP-4361) and get a session token.

``POST /v1/auth/nonce`` hands out a single-use nonce; ``POST /v1/auth/login``
checks the signed message (domain, nonce, chain, expiry, signature) and
answers a bearer token kept only hashed. ``OptionalAccount`` and
``RequiredAccount`` turn a session token into the address it signed in as;
``AnyCaller`` accepts a session or a provider token (the blob routes).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import delete, select

from ..chain import SiweError, SiweMessage, new_nonce, verify_siwe
from ..protocol import LoginRequest, Session, SiweChallenge
from ._blob_index import Caller
from ._context import Context, Ctx, in_thread
from ._db import NonceRow, ProviderRow, SessionRow
from ._errors import ApiError
from ._ids import hash_token, new_token

__all__ = [
    "SIGN_IN_STATEMENT",
    "AnyCaller",
    "OptionalAccount",
    "RequiredAccount",
    "issue_nonce",
    "login",
    "request_domain",
    "session_address",
    "token_caller",
]

SIGN_IN_STATEMENT = (
    "Sign in to the gensyn-jupyter coordinator to submit and pay for training tasks."
)
_NONCE_TTL = 300.0
_SESSION_TTL = 24 * 3600.0

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="SessionToken",
    description="the token of POST /v1/auth/login (Sign-In with Ethereum)",
)


def issue_nonce(ctx: Context, domain: str, uri: str) -> SiweChallenge:
    """A fresh single-use nonce for ``domain`` (expires in 5 minutes)."""
    if ctx.chain is None:
        raise ApiError(404, "this coordinator has no chain: there is nothing to sign in to")
    now = time.time()
    nonce = new_nonce()
    with ctx.db.write() as session:
        session.execute(delete(NonceRow).where(NonceRow.expires_at < now))
        session.add(NonceRow(nonce=nonce, domain=domain, expires_at=now + _NONCE_TTL))
    return SiweChallenge(
        nonce=nonce,
        domain=domain,
        uri=uri,
        chain_id=ctx.chain.chain_id,
        statement=SIGN_IN_STATEMENT,
    )


def login(ctx: Context, body: LoginRequest) -> Session:
    """Check a signed EIP-4361 message and open a session for its address."""
    if ctx.chain is None:
        raise ApiError(404, "this coordinator has no chain: there is nothing to sign in to")
    try:
        message = SiweMessage.parse(body.message)
    except SiweError as exc:
        raise ApiError(400, f"sign-in message: {exc}", "message") from None
    now = time.time()
    with ctx.db.write() as session:
        row = session.get(NonceRow, message.nonce)
        if row is None or row.expires_at < now:
            raise ApiError(
                401,
                "sign-in nonce unknown, used or expired: ask POST /v1/auth/nonce for a new one",
                "message",
            )
        session.delete(row)  # single use, whatever the outcome
        domain = row.domain
    try:
        address = verify_siwe(
            body.message,
            body.signature,
            domain=domain,
            nonce=message.nonce,
            chain_id=ctx.chain.chain_id,
        )
    except SiweError as exc:
        raise ApiError(401, f"sign-in refused: {exc}", "signature") from None
    token = new_token()
    expires = now + _SESSION_TTL
    with ctx.db.write() as session:
        session.execute(delete(SessionRow).where(SessionRow.expires_at < now))
        session.add(SessionRow(token_hash=hash_token(token), address=address, expires_at=expires))
    return Session(token=token, address=address, expires_at=expires)


def session_address(ctx: Context, token: str) -> str | None:
    """The address a session token signed in as, or None when unknown or expired."""
    with ctx.db.read() as session:
        row = session.scalar(select(SessionRow).where(SessionRow.token_hash == hash_token(token)))
        if row is None or row.expires_at < time.time():
            return None
        return row.address


async def _optional_account(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    if credentials is None or not credentials.credentials:
        return None
    address = await in_thread(session_address, ctx, credentials.credentials)
    if address is None:
        raise ApiError(
            401,
            "session expired or unknown: sign in again (POST /v1/auth/nonce, then /v1/auth/login)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return address


async def _required_account(
    account: Annotated[str | None, Depends(_optional_account)],
) -> str:
    if account is None:
        raise ApiError(
            401,
            "sign in first: this network takes payment, so every task belongs to an account. "
            "Open the Gensyn panel to connect a wallet, or run `gensyn signer` with your key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return account


def token_caller(ctx: Context, token: str | None) -> Caller:
    """Who a bearer token belongs to: a live session's account, a provider, or nobody.

    Raises
    ------
    ApiError
        401 for a token that is neither a live session nor a provider's.
    """
    if not token:
        return Caller()
    address = session_address(ctx, token)
    if address is not None:
        return Caller(account=address)
    with ctx.db.read() as session:
        provider = session.scalar(
            select(ProviderRow.id).where(ProviderRow.token_hash == hash_token(token))
        )
    if provider is None:
        raise ApiError(
            401,
            "bearer token not recognised: it is neither a live session (sign in again: "
            "POST /v1/auth/nonce, then /v1/auth/login) nor a provider's token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Caller(provider_id=provider)


async def _any_caller(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    token = credentials.credentials if credentials is not None else None
    return await in_thread(token_caller, ctx, token)


OptionalAccount = Annotated[str | None, Depends(_optional_account)]
RequiredAccount = Annotated[str, Depends(_required_account)]
AnyCaller = Annotated[Caller, Depends(_any_caller)]
"""A session or a provider token (401 for another token), or nobody (no token)."""


def request_domain(request: Request) -> tuple[str, str]:
    """The ``host[:port]`` a client reached us at, and the base URI."""
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return host, f"{request.url.scheme}://{host}"
