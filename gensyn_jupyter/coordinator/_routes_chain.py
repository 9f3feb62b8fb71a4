"""``/v1/chain``, ``/v1/auth`` and ``/v1/faucet``: where the escrow is, sign-in, devnet coins."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..protocol import ChainInfo, LoginRequest, Session, SiweChallenge
from ._auth import issue_nonce, login, request_domain
from ._context import Context, Ctx, in_thread
from ._errors import ApiError, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["chain"])


class FaucetRequest(BaseModel):
    """``POST /v1/faucet``: who gets devnet coins."""

    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")


class FaucetReply(BaseModel):
    """The funding transaction."""

    address: str
    wei: int
    tx: str


def _chain(ctx: Context) -> ChainInfo:
    if ctx.chain is None:
        raise ApiError(
            404, "this coordinator runs without a chain: tasks are free and need no wallet"
        )
    return ctx.chain.info()


@router.get(
    "/chain",
    response_model=ChainInfo,
    summary="The escrow contract",
    responses=error_responses(404),
)
async def chain_info(ctx: Ctx) -> ChainInfo:
    """Chain id, market address, operator, minimum stake, window, price; 404 on a free network."""
    return _chain(ctx)


@router.post(
    "/auth/nonce",
    response_model=SiweChallenge,
    summary="Start Sign-In with Ethereum",
    responses=error_responses(404),
)
async def auth_nonce(request: Request, ctx: Ctx) -> SiweChallenge:
    """A single-use nonce and the domain, URI and chain to put in the EIP-4361 message."""
    domain, uri = request_domain(request)
    return await in_thread(issue_nonce, ctx, domain, uri)


@router.post(
    "/auth/login",
    response_model=Session,
    summary="Finish Sign-In with Ethereum",
    responses=error_responses(400, 401, 404, 422),
)
async def auth_login(body: LoginRequest, ctx: Ctx) -> Session:
    """Check the signed message; the answer's token is the session (24 h)."""
    return await in_thread(login, ctx, body)


def _fund(ctx: Context, address: str) -> FaucetReply:
    chain = ctx.chain
    if chain is None or chain.faucet is None:
        raise ApiError(404, "no faucet here: only a devnet gives coins away")
    tx = chain.fund(address)
    return FaucetReply(address=address, wei=chain.config.faucet_wei, tx=tx)


@router.post(
    "/faucet",
    response_model=FaucetReply,
    summary="Devnet only: send coins to an address",
    responses=error_responses(404, 422),
)
async def faucet(body: FaucetRequest, ctx: Ctx) -> FaucetReply:
    """Send the devnet's faucet amount (10 ETH by default) to ``address``."""
    return await in_thread(_fund, ctx, body.address)
